"""The Model protocol: a network plus its decision rule.

A model's ``forward`` takes inputs in ``threat.bounds`` (normalisation lives inside the
model). ``loss``, ``predict`` and ``scores`` give its own decision rule, so attacks go
through the model's own training loss instead of a hard-coded cross-entropy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from advframe.errors import ParameterError


@runtime_checkable
class Model(Protocol):
    """What the evaluator and attacks need from a classifier."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-example training loss of ``outputs`` against class indices ``y``."""
        ...

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        """Predicted class index per example."""
        ...

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        """Per-class scores, higher = more likely (drives least-likely targets, top-5)."""
        ...


class Classifier(nn.Module):
    """Base class for models whose outputs are logits trained with cross-entropy.

    Subclasses implement ``forward``; override ``loss``/``predict``/``scores`` for
    another decision rule (for example MSE to codewords).
    """

    name: str = ""
    summary: str = ""

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-example cross-entropy."""
        return F.cross_entropy(outputs, y, reduction="none")

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        """Arg-max of the scores."""
        return self.scores(outputs).argmax(dim=1)

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        """The logits themselves."""
        return outputs


class WrappedClassifier(Classifier):
    """Wraps a plain ``nn.Module`` that returns logits: cross-entropy and arg-max."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def is_model(obj: Any) -> bool:
    """True when ``obj`` already carries a decision rule (loss, predict, scores)."""
    return all(callable(getattr(obj, m, None)) for m in ("loss", "predict", "scores"))


def as_model(module: nn.Module) -> nn.Module:
    """Return ``module`` if it follows the Model protocol, else wrap it as a logits classifier."""
    if is_model(module):
        return module
    if not isinstance(module, nn.Module):
        raise TypeError(f"expected a model (a torch nn.Module), got {type(module).__name__} {module!r:.60}: pass "
                        f"an nn.Module, or advframe.load_model(name or path) for a registered model name "
                        f"('advframe list models') or a checkpoint file")
    return WrappedClassifier(module)


class ModelWrapper(Classifier):
    """A model around another (``self.model``) that keeps the inner model's decision rule.

    Subclasses change what ``forward`` does around the inner model (:class:`Normalized`,
    :class:`advframe.precision.Autocast`); ``loss``, ``predict`` and ``scores`` stay the
    wrapped model's own.

    Args:
        model: the inner model (a plain ``nn.Module`` is treated as a logits classifier).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = as_model(model)

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.model.loss(outputs, y)

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        return self.model.predict(outputs)

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        return self.model.scores(outputs)


class Normalized(ModelWrapper):
    """A model that expects normalised inputs, seen from pixel space.

    ``forward(x)`` computes ``model((x - mean) / std)`` per channel, so that attacks work
    on images in ``[0, 1]`` (the threat model's bounds) and ``eps`` is measured in pixels:
    ``eps = 8/255`` changes each pixel by at most 8 grey levels, whatever ``std`` is. The
    decision rule (``loss``, ``predict``, ``scores``) is the wrapped model's own.

    Args:
        model: the network, taking normalised inputs (a plain ``nn.Module`` is treated as
            a logits classifier).
        mean: per-channel means (or one value for every channel).
        std: per-channel standard deviations, all > 0.

    Raises:
        ParameterError: for a std that is not positive, non-finite values, or lengths
            that differ.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float] | float, std: Sequence[float] | float):
        super().__init__(model)
        m, s = _channel_values("mean", mean), _channel_values("std", std)
        if len(m) != len(s):
            raise ParameterError(f"Normalized: mean has {len(m)} values but std has {len(s)}: give one per channel")
        if any(v <= 0 for v in s):
            raise ParameterError(f"Normalized: std must be > 0, got {list(s)}")
        self.register_buffer("mean", torch.tensor(m, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(s, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    @property
    def normalization(self) -> dict[str, list[float]]:
        """``{"mean": [...], "std": [...]}``, as stored in checkpoints."""
        return {"mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean.to(x.dtype), self.std.to(x.dtype)
        k = mean.numel()
        if x.dim() == 2:  # flat inputs (N, D): one value per feature or one for all
            mean, std = mean.view(1, -1), std.view(1, -1)
        if k > 1 and x.dim() >= 2 and x.shape[1] != k:  # broadcasting would invent channels
            what = "features" if x.dim() == 2 else "channels"
            raise ParameterError(f"Normalized: mean/std give {k} values but the inputs have {x.shape[1]} {what}: "
                                 f"give one value per {what[:-1]} (or a single value for all)")
        return self.model((x - mean) / std)


def _channel_values(what: str, values: Sequence[float] | float) -> list[float]:
    seq = [values] if isinstance(values, (int, float)) else list(values)
    try:
        out = [float(v) for v in seq]
    except (TypeError, ValueError):
        raise ParameterError(f"Normalized: {what} must be numbers, got {values!r}") from None
    if not out or not all(math.isfinite(v) for v in out):
        raise ParameterError(f"Normalized: {what} must be one or more finite numbers, got {values!r}")
    return out


@contextmanager
def eval_mode(model: Any) -> Iterator[Any]:
    """``model`` in eval mode for the block, then back in the mode it was in.

    Attacks, held-out measurements and shape probes run in eval mode, so that their
    forward passes neither update batch-norm statistics nor draw dropout masks. An object
    without ``training`` (a plain callable) is left alone.
    """
    was_training = getattr(model, "training", None)
    if was_training is not None:
        model.eval()
    try:
        yield model
    finally:
        if was_training is not None:
            model.train(was_training)


WRAPPER_PREFIXES = ("module.", "_orig_mod.")
"""State-dict prefixes added by wrappers (WrappedClassifier, DataParallel/DDP, torch.compile)."""


def network_and_normalization(model: nn.Module) -> tuple[nn.Module, dict[str, list[float]] | None]:
    """The architecture inside advframe's and torch's wrappers, and the normalisation around it.

    Peels :class:`WrappedClassifier`, :class:`Normalized`, ``DataParallel`` /
    ``DistributedDataParallel`` (``.module``) and ``torch.compile`` (``._orig_mod``).
    Returns ``(network, {"mean", "std"} or None)``.
    """
    norm = None
    while True:
        if isinstance(model, Normalized):
            norm = norm or model.normalization
            model = model.model
        elif isinstance(model, WrappedClassifier) or isinstance(
                model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model, norm


def architecture_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of the architecture itself: keys never carry wrapper prefixes."""
    return network_and_normalization(model)[0].state_dict()


def fit_state(state: dict[str, torch.Tensor], expected: Sequence[str]) -> dict[str, torch.Tensor]:
    """``state`` with wrapper prefixes (``module.``, ``_orig_mod.``) removed where that makes it fit.

    Reads checkpoints written before keys were stored without wrapper prefixes. A prefix
    is removed only when every key carries it and the architecture expects none of them.
    """
    while True:
        state, prefix = strip_prefix(state, expected)
        if prefix is None:
            return state


def strip_prefix(state: dict[str, torch.Tensor], expected: Sequence[str],
                 prefixes: Sequence[str] = WRAPPER_PREFIXES) -> tuple[dict[str, torch.Tensor], str | None]:
    """``state`` without one wrapper prefix, and the prefix removed (None: nothing removed).

    A prefix is removed only when every key carries it and the architecture expects none
    of the keys.
    """
    if not state or set(state) & set(expected):
        return state, None
    prefix = next((p for p in prefixes if all(k.startswith(p) for k in state)), None)
    if prefix is None:
        return state, None
    return {k[len(prefix):]: v for k, v in state.items()}, prefix


def import_path(obj: Any) -> str | None:
    """``package.module:QualName`` of a class or function, or None when it cannot be imported by name."""
    module, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qual or module == "__main__" or "<" in qual:
        return None
    return f"{module}:{qual}"


def model_config(model: nn.Module) -> tuple[str | None, dict[str, Any]]:
    """The registry name and constructor keywords a model was built with (or ``None, {}``).

    Looks through wrappers (:func:`network_and_normalization`).
    """
    for m in (model, network_and_normalization(model)[0]):
        if hasattr(m, "_advframe_name") or hasattr(m, "_advframe_config"):
            return getattr(m, "_advframe_name", None), dict(getattr(m, "_advframe_config", {}) or {})
    return None, {}


def model_arch(model: nn.Module) -> str | None:
    """The import path of the architecture (``package.module:factory``), or None.

    A model built from ``--arch`` remembers the path it was built from; otherwise the
    class of the network inside the wrappers.
    """
    for m in (model, network_and_normalization(model)[0]):
        arch = getattr(m, "_advframe_arch", None)
        if isinstance(arch, str):
            return arch
    return import_path(type(network_and_normalization(model)[0]))


def describe_model(model: nn.Module) -> dict[str, Any]:
    """The checkpoint metadata that rebuilds ``model``: ``model`` (registry name or None),
    ``model_config``, ``arch`` (import path or None) and ``normalize`` (or None)."""
    name, cfg = model_config(model)
    return {"model": name, "model_config": cfg, "arch": model_arch(model),
            "normalize": network_and_normalization(model)[1]}


def model_label(model: nn.Module) -> str:
    """A readable name for results: ``stem (architecture)`` for a checkpoint, else the
    registry name, else the class name of the network inside the wrappers."""
    for m in (model, network_and_normalization(model)[0]):
        label = getattr(m, "_advframe_label", None)
        if isinstance(label, str):
            return label
    name, _ = model_config(model)
    return name or type(network_and_normalization(model)[0]).__name__


def without_initialisation(build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` on the meta device, then given real but uninitialised storage.

    For a network whose every weight and buffer a state dict is about to overwrite: the
    random initialisation of millions of weights is skipped (seconds for a WideResNet). A
    network that keeps buffers its state dict does not hold is built normally, since the
    load would leave them empty; so is one whose construction fails on the meta device.
    """
    try:
        with torch.device("meta"):
            net = build()
    except (RuntimeError, NotImplementedError, TypeError, ValueError):
        return build()
    inner = network_and_normalization(net)[0]
    kept = set(inner.state_dict())
    if not all(name in kept for name, _ in inner.named_buffers()):
        return build()
    return net.to_empty(device="cpu")
