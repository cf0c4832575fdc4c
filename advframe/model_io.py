"""Saving models and rebuilding them from checkpoints, and ``--arch`` factories.

**Loading runs no code.** A checkpoint may record the import path of its architecture
(``arch``, e.g. ``mynets.cnn:Net``), but advframe never imports a path read from a
file: it builds the architecture from an installed plugin's registry name, or from the
factory the user names (``arch=`` here, ``--arch`` on the CLI). When it needs the path,
the error says which ``arch`` to pass (a :class:`~advframe.errors.Hint`).

The checkpoint's constructor config is data from a file, so it is checked before any
factory sees it: an object of keyword arguments the factory takes, holding finite
numbers of bounded size, booleans, short strings, and short lists or objects of these;
a factory given absurd sizes is first built on the ``meta`` device (no memory) and
refused when it would hold more than :data:`MAX_PARAMETERS` parameters.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import re
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from advframe.checkpoint import load_checkpoint, save_checkpoint
from advframe.errors import AdvframeError, CheckpointError, Hint, ParameterError
from advframe.model import (Normalized, describe_model, fit_state, network_and_normalization,
                            without_initialisation)

FORMAT = "advframe.model/1"
ARCH_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$", re.ASCII)
MAX_PARAMETERS = 2_000_000_000
"""Largest model (in parameters) a checkpoint's config may ask a factory to build."""
MAX_NUMBER = 1e9
MAX_STRING = 256
MAX_ITEMS = 1024
MAX_DEPTH = 4


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ---------------------------------------------------------------- arch
# The option a fix names: ``arch=`` in Python, ``--arch`` on the CLI; the constructor keywords
# are ``config=`` in Python and ``--model-param`` on the CLI.
MODEL_PARAM = Hint("config", flag="--model-param")
ANY_ARCH = Hint("arch", "package.module:factory")


def check_arch(spec: str) -> str:
    """Return ``spec`` if it reads ``package.module:factory``.

    Raises:
        ParameterError: otherwise.
    """
    if not isinstance(spec, str) or not ARCH_RE.match(spec):
        raise ParameterError(f"{{arch}} '{_short(spec)}' is not an import path: write package.module:factory, "
                             f"e.g. {{arch}} (the module must be importable, e.g. on PYTHONPATH)",
                             hint=(Hint("arch"), Hint("arch", "mynets.cnn:Net")))
    return spec


def import_arch(spec: str) -> Callable[..., nn.Module]:
    """Import the architecture factory the USER named (``package.module:factory``).

    Never call this with a path read from a checkpoint: that would run code named by a file.

    Raises:
        ParameterError: for a malformed path, a module that cannot be imported, or a
            missing attribute.
    """
    check_arch(spec)
    module_name, attr = spec.split(":", 1)
    named = Hint("arch", spec)
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ParameterError(f"{{arch}}: cannot import module '{exc.name or module_name}': put the folder "
                             f"holding it on PYTHONPATH or install its package", hint=named) from None
    except Exception as exc:  # the user's own module failed while importing
        raise ParameterError(f"{{arch}}: importing '{module_name}' failed ({type(exc).__name__}: "
                             f"{_short(str(exc), 120)})", hint=named) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ParameterError(f"{{arch}}: '{module_name}' has no attribute '{attr}'", hint=named)
        obj = getattr(obj, part)
    if not callable(obj):
        raise ParameterError(f"{{arch}}: '{attr}' is not a class or function", hint=named)
    return obj


# ---------------------------------------------------------------- config checks


def check_config(config: Any, where: str) -> dict[str, Any]:
    """A constructor config from a file: a JSON object of bounded, finite values.

    Raises:
        CheckpointError: naming the bad key and value.
    """
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise CheckpointError(f"{where}: model_config is {type(config).__name__} {_short(config)}, expected an "
                              f"object of constructor keywords: re-save the model with advframe.save_model")
    problem = _value_problem(config, "model_config", 0)
    if problem:
        raise CheckpointError(f"{where}: {problem}: fix the checkpoint's model_config (or override it with "
                              f"{{config}})", hint=MODEL_PARAM)
    return dict(config)


def _value_problem(value: Any, key: str, depth: int) -> str | None:
    """What is wrong with a config value from a file or a user (``width = inf must be ...``), if anything."""
    bad = None
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or abs(value) > MAX_NUMBER:
            bad = f"must be a finite number of size at most {MAX_NUMBER:g}"
    elif isinstance(value, str):
        if len(value) > MAX_STRING:
            bad = f"is a string longer than {MAX_STRING} characters"
    elif isinstance(value, (list, dict)):
        if depth >= MAX_DEPTH:
            bad = f"is nested deeper than {MAX_DEPTH} levels"
        elif len(value) > MAX_ITEMS:
            bad = f"holds more than {MAX_ITEMS} items"
        else:
            keyed = ((f"{key}.{k}", v) for k, v in value.items()) if isinstance(value, dict) \
                else ((f"{key}[{i}]", v) for i, v in enumerate(value))
            return next(filter(None, (_value_problem(v, k, depth + 1) for k, v in keyed)), None)
    else:
        bad = f"has type {type(value).__name__}"
    return f"{key} = {_short(value)} {bad}" if bad else None


def _unknown_key(factory: Callable[..., Any], config: dict[str, Any], label: str) -> str | None:
    """``model 'LABEL' takes no constructor key 'k' (it takes ...)`` for the first key ``factory``
    does not take, if any."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    params = sig.parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in config:
        if key not in names:
            return f"model '{label}' takes no constructor key '{_short(key)}' (it takes {', '.join(names) or 'none'})"
    return None


def check_keywords(factory: Callable[..., Any], config: dict[str, Any], where: str, label: str) -> None:
    """Refuse constructor keys of a checkpoint that ``factory`` does not take, naming those it does."""
    problem = _unknown_key(factory, config, label)
    if problem:
        raise CheckpointError(f"{where}: {problem}: drop it from model_config")


class _TooLarge(Exception):
    pass


def _parameter_count(factory: Callable[..., Any], config: dict[str, Any]) -> int | None:
    """Parameters the factory would allocate, counted on the meta device (None when it cannot tell).

    Parameters are counted as modules register them, so a factory that fails later on the
    meta device (a data-dependent check) is still measured; counting stops past the limit.
    """
    total = 0

    def count(module: nn.Module, name: str, param: Any) -> None:
        nonlocal total
        total += param.numel() if param is not None else 0
        if total > MAX_PARAMETERS:
            raise _TooLarge

    handle = nn.modules.module.register_module_parameter_registration_hook(count)
    try:
        with torch.device("meta"):
            factory(**config)
    except _TooLarge:
        return total
    except Exception:  # noqa: BLE001 - only an estimate; the real build reports errors
        pass
    finally:
        handle.remove()
    return total


def check_model_params(factory: Callable[..., Any], config: dict[str, Any], name: str) -> None:
    """Refuse constructor keywords given by the user (``--model-param``, ``build_model(**config)``)
    that a registered model's factory does not take, or of absurd size, before it runs.

    Raises:
        ParameterError: naming the key or value.
    """
    where = f"model '{name}'"
    problem = _unknown_key(factory, config, name)
    if problem is None:
        bad = next(filter(None, (_value_problem(value, key, 1) for key, value in config.items())), None)
        problem = f"{where}: {bad}" if bad else None
    if problem:
        raise ParameterError(f"{problem}: fix the model's parameters ({{config}})", hint=MODEL_PARAM)
    count = _parameter_count(factory, config)
    if count is not None and count > MAX_PARAMETERS:
        raise ParameterError(f"{where} with {_short(config, 120)} would have {count:.3g} parameters (limit "
                             f"{MAX_PARAMETERS:.0e}): the parameters are absurd, fix them")


def build_checked(factory: Callable[..., Any], config: dict[str, Any], where: str, label: str) -> nn.Module:
    """Build ``factory(**config)`` for a checkpoint; every failure is one CheckpointError."""
    check_keywords(factory, config, where, label)
    if config:
        count = _parameter_count(factory, config)
        if count is not None and count > MAX_PARAMETERS:
            raise CheckpointError(f"{where}: model '{label}' with model_config {_short(config, 120)} would have "
                                  f"{count:.3g} parameters (limit {MAX_PARAMETERS:.0e}): the config is absurd, fix it")
    try:
        net = factory(**config)
    except (TypeError, ValueError, RuntimeError, MemoryError, OverflowError, AdvframeError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{where}: model '{label}' cannot be built with model_config "
                              f"{_short(config, 120)} ({type(exc).__name__}: {_short(first, 160)})") from None
    if not isinstance(net, nn.Module):
        raise CheckpointError(f"{where}: '{label}' returned {type(net).__name__}, not an nn.Module")
    return net


# ---------------------------------------------------------------- saving


def save_model(model: nn.Module, path: str | os.PathLike[str], *, config: dict[str, Any] | None = None,
               arch: str | None = None, dataset: str | None = None,
               metadata: dict[str, Any] | None = None) -> Path:
    """Save a model's weights and how to rebuild it to a ``.safetensors`` checkpoint.

    The weights are stored as ``model.<key>``, where ``<key>`` is the architecture's own
    state-dict key: wrappers (advframe's, DataParallel/DDP's ``module.``, torch.compile's
    ``_orig_mod.``) add no prefix. The metadata records the registry name (for a model
    built by :func:`advframe.build_model`), the constructor ``config``, the import path of
    the architecture (``arch``), the normalisation of an :class:`advframe.Normalized`
    model, and ``dataset``. The file is written atomically. No pickle.

    Args:
        model: the model (e.g. ``advframe.train(...).model``, or any ``nn.Module``).
        path: the file to write (``.safetensors``).
        config: constructor keywords that rebuild the architecture (default: those it
            was built with by advframe, else none).
        arch: ``package.module:factory`` that builds it (default: the class of the network).
            Loading never imports it on its own: the user passes it as ``--arch``.
        dataset: the data set name to evaluate on by default.
        metadata: more JSON-serialisable entries to store.

    Returns:
        The path written.

    Raises:
        ParameterError: for a config or metadata that is not JSON, or a malformed ``arch``.
    """
    if not isinstance(model, nn.Module):
        raise ParameterError(f"save_model needs an nn.Module, got {type(model).__name__}")
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ParameterError(f"save_model writes safetensors: name the file '{path.stem}.safetensors', not '{path}'")
    info = describe_model(model)
    if config is not None:
        info["model_config"] = dict(config)
    if arch is not None:
        info["arch"] = check_arch(arch)
    try:
        check_config(info["model_config"], "save_model")
    except CheckpointError as exc:
        raise ParameterError(*exc.args, hint=exc.hints) from None
    net = network_and_normalization(model)[0]
    tensors = {f"model.{k}": v for k, v in net.state_dict().items()}
    meta = {**(metadata or {}), "format": FORMAT, **info}
    if dataset is not None:
        meta["dataset"] = dataset
    try:
        save_checkpoint(path, tensors, meta)
    except TypeError as exc:
        raise ParameterError(f"save_model: metadata must be JSON-serialisable ({exc})") from None
    return path


# ---------------------------------------------------------------- loading


def _factory(path: Path, meta: dict[str, Any], arch: str | None) -> tuple[Callable[..., Any], str]:
    """The factory that rebuilds the checkpoint's architecture, and its label. Imports only ``arch``."""
    from advframe import plugins

    if arch is not None:
        return import_arch(arch), arch
    name, recorded = meta.get("model"), meta.get("arch")
    reg = plugins.registry()
    if isinstance(name, str) and name in reg.names("models"):
        return reg.get("models", name).factory, name
    if isinstance(recorded, str) and ARCH_RE.match(recorded):
        raise CheckpointError(f"'{path}' was saved from architecture '{recorded}', which no installed plugin "
                              f"registers; advframe never imports code named in a file: if you trust it, "
                              f"pass {{arch}}", hint=Hint("arch", recorded))
    if isinstance(name, str):
        raise CheckpointError(f"'{path}' needs model '{_short(name)}', which no installed plugin registers: "
                              f"install the plugin that provides it, or pass {{arch}}", hint=ANY_ARCH)
    raise CheckpointError(f"'{path}' does not say how to build its architecture: pass {{arch}} "
                          f"(and {{config}} for its constructor)", hint=(ANY_ARCH, MODEL_PARAM))


def load_weights(net: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Load ``state`` into ``net`` (wrapper prefixes removed where needed); one-line errors.

    Raises:
        CheckpointError: for non-finite weights, or keys or shapes that do not fit.
    """
    for key, t in state.items():
        if torch.is_floating_point(t) and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{where}: weight '{_short(key)}' holds NaN or infinite values: "
                                  f"the model diverged or the file is damaged; use another checkpoint")
    inner = network_and_normalization(net)[0]
    state = fit_state(state, list(inner.state_dict()))
    try:
        missing, unexpected = inner.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln] or [str(exc).splitlines()[0]]
        raise CheckpointError(f"{where}: the weights do not fit the architecture: {_short(lines[0], 240)}; "
                              f"check {{arch}} and the constructor config ({{config}})",
                              hint=(Hint("arch"), MODEL_PARAM)) from None
    if missing or unexpected:
        raise CheckpointError(f"{where}: the weights do not fit the architecture: missing {list(missing)[:3]}, "
                              f"unexpected {list(unexpected)[:3]}; check {{arch}} and {{config}}",
                              hint=(Hint("arch"), MODEL_PARAM))


def model_from_checkpoint(path: str | os.PathLike[str], *, arch: str | None = None,
                          config: dict[str, Any] | None = None) -> nn.Module:
    """Rebuild a model from an advframe safetensors checkpoint.

    Args:
        path: the checkpoint.
        arch: ``package.module:factory`` to build the architecture with, named by the
            user (a path recorded in the file is never imported).
        config: constructor keywords that override the checkpoint's ``model_config``.

    Raises:
        CheckpointError: for a file that is not a checkpoint, names an architecture that
            is not registered (the message gives the ``arch`` to pass), has a bad
            config, or weights that do not fit.
        ParameterError: for an ``arch`` that cannot be imported.
    """
    p = Path(path)
    tensors, meta = load_checkpoint(p)
    cfg = {**check_config(meta.get("model_config"), f"'{p}'"), **(config or {})}
    from advframe import plugins

    family = plugins.registry().family(arch)
    if family is not None:  # a registered family member: built like a registered name
        meta, arch = {**meta, "model": family[0]}, None
        cfg = {**cfg, **family[1]}
    factory, label = _factory(p, meta, arch)
    if arch is None and isinstance(factory, type):  # a registered class: no initialisation the load overwrites
        net = without_initialisation(lambda: build_checked(factory, cfg, f"'{p}'", label))
    else:
        net = build_checked(factory, cfg, f"'{p}'", label)
    if arch is None:  # a registered name: remember it as the registry does
        net._advframe_name, net._advframe_config = label, cfg
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    if not state:
        state = {k: v for k, v in tensors.items() if not k.startswith(("optim.", "defense.", "rng."))}
    load_weights(net, state, f"'{p}'")
    if arch is not None:
        net._advframe_arch = arch
        net._advframe_config = cfg
    norm = meta.get("normalize")
    model: nn.Module = net
    if norm:
        try:
            model = Normalized(net, norm["mean"], norm["std"])
        except (KeyError, TypeError, AdvframeError) as exc:
            raise CheckpointError(f"'{p}': metadata 'normalize' {_short(norm)} is not {{mean, std}} ({exc})") from None
    shape = meta.get("input_shape")
    if isinstance(shape, list) and shape and all(isinstance(v, int) and 0 < v <= 4096 for v in shape):
        net.input_shape = tuple(shape)  # declared by the checkpoint (advframe import records it)
    model._advframe_checkpoint = dict(meta)
    model._advframe_label = f"{p.stem} ({label})"
    return model
