"""The user's model on the command line: ``--arch``, ``--model-param``, ``--normalize``, ``--untrained``.

Shared by ``eval``, ``train``, ``transfer`` and ``lipschitz``. Only code the user names
with ``--arch`` (or an installed plugin registered) is imported: a path recorded in a
checkpoint is printed as the ``--arch`` to pass, never imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from advframe.cli.common import parse_params
from advframe.errors import ParameterError

ArchOption = Annotated[Optional[str], typer.Option(
    "--arch", metavar="PKG.MODULE:FACTORY",
    help="Your architecture, e.g. mynets.cnn:Net (importable, e.g. on PYTHONPATH): builds a checkpoint's "
         "network when no plugin registers it. advframe imports only what you name here.")]
ArchListOption = Annotated[Optional[list[str]], typer.Option(
    "--arch", metavar="PKG.MODULE:FACTORY",
    help="Your architecture, e.g. mynets.cnn:Net, for checkpoints no plugin registers; repeatable (a "
         "checkpoint uses the one it records, or the only one given).")]
ModelParamOption = Annotated[Optional[list[str]], typer.Option(
    "--model-param", metavar="KEY=VALUE", help="Model constructor keyword, e.g. width=2; repeatable.")]
NormalizeOption = Annotated[Optional[str], typer.Option(
    "--normalize", metavar="MEAN/STD",
    help="The model expects normalised inputs: per-channel mean/std, e.g. 0.4914,0.4822,0.4465/0.247,0.243,0.261. "
         "Attacks still work on pixels in [0, 1], so eps is in pixel units.")]
UntrainedOption = Annotated[bool, typer.Option(
    "--untrained", help="Allow an architecture without trained weights (random initial weights).")]


def number(v: object) -> object:
    """``"2"`` -> 2, ``"0.5"`` -> 0.5, ``"true"`` -> True, else the string."""
    if isinstance(v, dict):
        return v
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return v.strip().lower() == "true"
    for conv in (int, float):
        try:
            return conv(v)
        except (TypeError, ValueError):
            pass
    return v


def parse_model_params(values: list[str] | None) -> dict[str, Any]:
    """``--model-param key=value`` as constructor keywords (numbers and booleans converted)."""
    return {k: number(v) for k, v in parse_params(values).items()}


def parse_normalize(text: str | None) -> tuple[list[float], list[float]] | None:
    """``--normalize 0.5,0.5,0.5/0.25,0.25,0.25`` -> ``(mean, std)``.

    Raises:
        ParameterError: for anything but two comma-separated lists of numbers.
    """
    if text is None:
        return None
    parts = text.split("/")
    try:
        if len(parts) != 2:
            raise ValueError
        mean, std = ([float(v) for v in p.split(",")] for p in parts)
    except ValueError:
        raise ParameterError(f"--normalize '{text}' is not MEAN/STD: write per-channel values, e.g. "
                             f"--normalize 0.4914,0.4822,0.4465/0.247,0.243,0.261 (or 0.1307/0.3081)") from None
    return mean, std


def is_checkpoint(spec: str | None) -> bool:
    """Whether a ``--model`` value names a file rather than a registered name."""
    return spec is not None and (spec.endswith(".safetensors") or "/" in spec or Path(spec).is_file())


def has_weights(model: Any, factory: Any = None) -> bool:
    """True for a model loaded from a checkpoint or built by a factory that declares ``pretrained = True``."""
    from advframe.model import network_and_normalization

    if getattr(factory, "pretrained", False):
        return True
    return any(getattr(m, "_advframe_checkpoint", None) is not None for m in (model, network_and_normalization(model)[0]))


def pick_arch(archs: list[str] | None, spec: str) -> str | None:
    """The ``--arch`` for checkpoint ``spec`` among several (transfer, lipschitz)."""
    if not archs or not is_checkpoint(spec):
        return None
    if len(archs) == 1:
        return archs[0]
    from advframe.checkpoint import read_metadata

    recorded = read_metadata(spec).get("arch") if is_checkpoint(spec) else None
    if recorded in archs:
        return recorded
    return None


def load_user_model(spec: str | None, *, arch: str | None = None, model_param: list[str] | None = None,
                    normalize: str | None = None, untrained: bool = False, device: str = "cpu",
                    check: bool = True) -> tuple[Any, str]:
    """Load the model the user named: ``(model, label for results)``.

    ``spec`` is a checkpoint (built with ``arch`` when given), a registered name, or None
    with ``arch`` (an untrained network). An architecture without weights needs
    ``untrained``.
    """
    import advframe
    from advframe import plugins
    from advframe.model import Normalized, model_label
    from advframe.model_io import build_checked, check_model_params, import_arch

    params = parse_model_params(model_param)
    norm = parse_normalize(normalize)
    family = plugins.registry().family(arch)
    label_override = None
    if family is not None and not is_checkpoint(spec):  # --arch timm:NAME: a registered family member
        if spec is not None:
            raise ParameterError(f"--arch {arch} builds a network, but --model '{spec}' is a registered name: "
                                 f"drop one of them")
        spec, params, arch, label_override = family[0], {**params, **family[1]}, None, arch
    if is_checkpoint(spec):
        model = advframe.load_model(spec, device=device, arch=arch, config=params)
        label = model_label(model)
        factory = None
    elif spec is None and arch is not None:
        factory = import_arch(arch)
        check_model_params(factory, params, arch)  # the user's keywords, refused as --model-param
        model = advframe.as_model(build_checked(factory, params, "--arch", arch))
        model._advframe_arch, model._advframe_config = arch, params
        label = arch
    else:
        if arch is not None:
            raise ParameterError(f"--arch builds a checkpoint's network, but --model '{spec}' is a registered "
                                 f"name: pass --model FILE.safetensors, or drop --model to build {arch}")
        factory = plugins.registry().get("models", spec).factory
        model = advframe.load_model(spec, device=device, config=params)
        label = label_override or spec
    if check and not untrained and not has_weights(model, factory):
        what = f"model '{spec}'" if spec is not None else f"--arch {arch}"
        raise ParameterError(f"{what} is an architecture without trained weights: pass a checkpoint "
                             f"(--model FILE.safetensors), or --untrained to use random weights on purpose")
    if norm is not None:
        if isinstance(model, Normalized):
            raise ParameterError(f"--normalize: '{spec}' already normalises its inputs (its checkpoint records "
                                 f"mean/std): drop --normalize")
        model = Normalized(model, *norm)
        model._advframe_label = label
    return model.to(device).eval(), label


def model_to_train(model: str, arch: str | None, model_param: list[str] | None, normalize: str | None,
                   seed: int) -> tuple[Any, dict[str, Any] | None]:
    """``(model or name, model_config)`` for :func:`advframe.train` from train's options.

    A registered name without ``--arch`` / ``--normalize`` is built by train itself (after
    seeding); otherwise the network is built here, after the same seeding.
    """
    import torch

    import advframe
    from advframe import plugins
    from advframe.model import Normalized
    from advframe.model_io import build_checked, check_model_params, import_arch

    params = parse_model_params(model_param)
    norm = parse_normalize(normalize)
    family = plugins.registry().family(arch)
    if family is not None:  # --arch timm:NAME: the registered family member
        model, params, arch = family[0], {**params, **family[1]}, None
    if arch is None:
        plugins.registry().get("models", model)
        if norm is None:
            return model, params
    torch.manual_seed(seed)
    if arch is None:
        net = advframe.build_model(model, **params)
    else:
        factory = import_arch(arch)
        check_model_params(factory, params, arch)  # the user's keywords, refused as --model-param
        net = build_checked(factory, params, "--arch", arch)
        net._advframe_arch, net._advframe_config = arch, params
    return (Normalized(net, *norm) if norm is not None else net), None
