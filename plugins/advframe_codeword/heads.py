"""Output heads and losses of Saito & Roy (*Adversarial robustness with loss functions and
target representations*): O:SOFTMAX:CE, O:SOFTMAX:MSE and R:TANH:MSE (§3.1, §3.2, §4.2).

:class:`CodewordModel` wraps any registered model (the *base*) and gives it one of three
heads, each with its own decision rule (``loss``/``predict``/``scores``), so that every
advframe attack — which only goes through those methods — attacks it white-box with its
own training loss (§4.3.2):

* ``softmax_ce``  (O:SOFTMAX:CE): outputs are the base's logits; cross-entropy; arg-max.
* ``softmax_mse`` (O:SOFTMAX:MSE): outputs are softmax probabilities trained with MSE to
  one-hot targets; prediction is the nearest one-hot vector (= arg-max of the
  probabilities); scores are minus the Euclidean distance to each one-hot vector.
* ``tanh_mse``    (R:TANH:MSE): the base outputs ``dim`` values, squashed by tanh and
  trained with MSE to class codewords drawn once from U(−1, 1)^dim by a secret key
  (an integer seed of a ``torch.Generator``); prediction is the nearest codeword in
  Euclidean distance; scores are minus that distance.

The codebook is a buffer, so it is saved in checkpoints as ``model.codebook``. With
``share_codebook=False`` it is left out of the state dict (and :func:`strip_codebook`
also removes the key from a checkpoint's metadata), so whoever loads the file must
supply the key — the setting of an attacker who lacks the codebook.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from advframe.errors import CheckpointError, ParameterError
from advframe.model import Classifier

HEADS: tuple[str, ...] = ("softmax_ce", "softmax_mse", "tanh_mse")
#: Environment variable read for the secret key when a checkpoint holds neither codebook nor key.
KEY_ENV = "ADVFRAME_CODEWORD_KEY"


def make_codebook(num_classes: int, dim: int, key: int) -> torch.Tensor:
    """The random codebook of Saito & Roy §3.2: ``num_classes`` codewords from U(−1, 1)^dim.

    Args:
        num_classes: number of classes (rows).
        dim: codeword length ``d`` (the paper uses 128).
        key: the secret key, the seed of a fresh ``torch.Generator`` (same key → same codebook
            on every platform, since sampling happens on the CPU in float32).

    Returns:
        A float32 tensor ``(num_classes, dim)`` with entries in [−1, 1).
    """
    gen = torch.Generator(device="cpu").manual_seed(int(key))
    # on the CPU whatever device context is active (the generator is a CPU one; a meta-device
    # build, as parameter counting does, would otherwise import torch's compiler for the ops)
    return torch.rand(num_classes, dim, generator=gen, dtype=torch.float32, device="cpu") * 2.0 - 1.0


def codebook_digest(codebook: torch.Tensor) -> str:
    """A short SHA-256 fingerprint of a codebook, to tell a wrong key from the right one."""
    data = codebook.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


def _resolve_key(key: int | str | None) -> int:
    if key is None or key == "":
        env = os.environ.get(KEY_ENV)
        if env is None:
            raise CheckpointError(
                "this codeword model's codebook and key were kept out of the checkpoint "
                f"(share_codebook=false): pass the secret key with advframe_codeword.load_with_key(path, key) "
                f"or set the environment variable {KEY_ENV}")
        key = env
    try:
        return int(key)
    except (TypeError, ValueError):
        raise ParameterError(f"model 'codeword': key must be an integer seed, got {key!r}") from None


class CodewordModel(Classifier):
    """A base model with a Saito & Roy output head and its decision rule (§3, §4.2).

    Args:
        base: registered name of the base architecture (any model of the zoo, e.g.
            ``mnist_cnn``); it must accept ``num_classes`` (its number of outputs).
        base_config: keywords for the base (``num_classes`` is set by the head).
        head: ``softmax_ce``, ``softmax_mse`` or ``tanh_mse`` (see the module docstring).
        dim: codeword length ``d`` for ``tanh_mse`` (Saito & Roy: 128; ignored otherwise).
        key: secret key (integer seed) of the codebook. ``None`` reads the environment
            variable ``ADVFRAME_CODEWORD_KEY`` (used when a checkpoint was stripped).
        num_classes: number of classes.
        share_codebook: keep the codebook in the state dict (and so in checkpoints).
        codebook_sha256: expected :func:`codebook_digest` of the codebook; a key that does
            not reproduce it is refused (set by :func:`strip_codebook`).

    Raises:
        ParameterError: for an unknown head, a bad ``dim`` or a base without ``num_classes``.
        CheckpointError: when no key is given for a model whose codebook must be regenerated.
    """

    name: ClassVar[str] = "codeword"
    summary: ClassVar[str] = "Saito & Roy heads on any base model: softmax_ce, softmax_mse, tanh_mse codewords"

    def __init__(self, base: str = "mnist_cnn", base_config: dict[str, Any] | None = None,
                 head: str = "tanh_mse", dim: int = 128, key: int | None = 0, num_classes: int = 10,
                 share_codebook: bool = True, codebook_sha256: str | None = None) -> None:
        super().__init__()
        from advframe.api import build_model
        from advframe.params import coerce

        if head not in HEADS:
            raise ParameterError(f"model 'codeword': head '{head}' is unknown; use one of {', '.join(HEADS)}")
        dim, num_classes = int(dim), int(num_classes)
        if dim < 1 or num_classes < 2:
            raise ParameterError(f"model 'codeword': need dim >= 1 and num_classes >= 2, got {dim}, {num_classes}")
        share_codebook = coerce(share_codebook, True, "share_codebook", "model 'codeword'")
        config = {k: _number(v) for k, v in dict(base_config or {}).items()}
        if "num_classes" in config:
            raise ParameterError("model 'codeword': set num_classes on the codeword model, not in base_config "
                                 "(the head decides how many outputs the base has)")
        outputs = dim if head == "tanh_mse" else num_classes
        try:
            self.base = build_model(base, **config, num_classes=outputs)
        except TypeError as exc:
            raise ParameterError(f"model 'codeword': base '{base}' does not take num_classes/{list(config)} "
                                 f"({exc}); pick a base whose constructor has num_classes") from None
        self.head, self.dim, self.num_classes = head, dim, num_classes
        self.share_codebook = bool(share_codebook)
        if head == "tanh_mse":
            codebook = make_codebook(num_classes, dim, _resolve_key(key))
            if codebook_sha256 is not None and codebook_digest(codebook) != codebook_sha256:
                raise CheckpointError("model 'codeword': the key does not reproduce this checkpoint's codebook "
                                      f"(fingerprint {codebook_digest(codebook)} != {codebook_sha256}): "
                                      "pass the secret key the model was trained with")
        else:
            codebook = torch.eye(num_classes)
        self.register_buffer("codebook", codebook, persistent=self.share_codebook)

    @property
    def _advframe_config(self) -> dict[str, Any]:
        """The constructor config written to checkpoints (set by the registry after construction).

        With ``share_codebook=False`` and a codebook head, the key is replaced by ``None``
        and a fingerprint of the codebook is added, so a checkpoint holds neither the
        codebook nor the key that generates it.
        """
        try:
            return self.__dict__["_checkpoint_config"]
        except KeyError:
            raise AttributeError("_advframe_config") from None

    @_advframe_config.setter
    def _advframe_config(self, config: dict[str, Any]) -> None:
        config = dict(config)
        if not self.share_codebook and self.head == "tanh_mse":
            config.update(key=None, share_codebook=False, codebook_sha256=codebook_digest(self.codebook))
        self.__dict__["_checkpoint_config"] = config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (``softmax_ce``), softmax probabilities (``softmax_mse``) or tanh outputs (``tanh_mse``)."""
        z = self.base(x)
        if self.head == "softmax_mse":
            return torch.softmax(z, dim=1)
        if self.head == "tanh_mse":
            return torch.tanh(z)
        return z

    def distances(self, outputs: torch.Tensor) -> torch.Tensor:
        """Euclidean distance of each output to each class's target ``(N, num_classes)`` (§3.1)."""
        diff = outputs.unsqueeze(1) - self.codebook.to(outputs.dtype).unsqueeze(0)
        # sqrt with a floor keeps the gradient finite at distance 0
        return diff.pow(2).sum(dim=2).clamp_min(1e-12).sqrt()

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        """The target representation of each label: one-hot rows or codewords."""
        return self.codebook[y.long()]

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-example training loss: cross-entropy, or the mean squared error to the target (§3.1)."""
        if self.head == "softmax_ce":
            return F.cross_entropy(outputs, y, reduction="none")
        return (outputs - self.targets(y).to(outputs.dtype)).pow(2).mean(dim=1)

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        """Logits for ``softmax_ce``; minus the distance to each target for the MSE heads (§3.3)."""
        if self.head == "softmax_ce":
            return outputs
        return -self.distances(outputs)

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        """Arg-max of the logits, or the nearest target in Euclidean distance (§3.1)."""
        return self.scores(outputs).argmax(dim=1)


def _number(v: Any) -> Any:
    if not isinstance(v, str):
        return v
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(v.lower(), v)


def strip_codebook(path_in: str | os.PathLike[str], path_out: str | os.PathLike[str]) -> dict[str, Any]:
    """Write a copy of a codeword checkpoint without its codebook and without its key.

    The copy keeps a fingerprint of the codebook (``codebook_sha256``), so loading it
    with the right key works (:func:`load_with_key` or ``ADVFRAME_CODEWORD_KEY``) and a
    wrong key is refused. It simulates Saito & Roy's setting of an attacker who has the
    weights but not the secret codebook. Note that with a small key space the
    fingerprint lets anyone find the key by trying seeds: use a large random key.

    Args:
        path_in: a checkpoint of a ``codeword`` model with head ``tanh_mse``.
        path_out: where to write the stripped copy.

    Returns:
        The new ``model_config``.

    Raises:
        CheckpointError: if ``path_in`` is not a codeword checkpoint or has no codebook.
    """
    from advframe.checkpoint import load_checkpoint, save_checkpoint

    tensors, meta = load_checkpoint(path_in)
    config = dict(meta.get("model_config") or {})
    if meta.get("model") != "codeword" or config.get("head", "tanh_mse") != "tanh_mse":
        raise CheckpointError(f"'{path_in}' is not a checkpoint of a codeword model with head tanh_mse")
    codebook = tensors.pop("model.codebook", None)
    if codebook is None:
        raise CheckpointError(f"'{path_in}' holds no codebook (already stripped?)")
    config.update(key=None, share_codebook=False, codebook_sha256=codebook_digest(codebook))
    meta = {k: v for k, v in meta.items() if k != "advframe_version"}
    meta["model_config"] = config
    save_checkpoint(path_out, tensors, meta)
    return config


def load_with_key(path: str | os.PathLike[str], key: int, device: str | torch.device = "cpu") -> CodewordModel:
    """Load a stripped codeword checkpoint by supplying its secret key.

    Raises:
        CheckpointError: when the key does not reproduce the stored fingerprint.
    """
    import advframe
    from advframe.checkpoint import load_checkpoint

    tensors, meta = load_checkpoint(path)
    config = dict(meta.get("model_config") or {})
    if meta.get("model") != "codeword":
        raise CheckpointError(f"'{path}' is not a checkpoint of a codeword model")
    config["key"] = int(key)
    model = advframe.build_model("codeword", **config)
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"'{path}' does not fit the codeword model: missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}")
    return model.to(device).eval()
