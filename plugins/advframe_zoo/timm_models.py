"""Any timm model by name: ``--arch timm:NAME`` (optional extra ``pip install "advframe[timm]"``).

timm (Wightman, *PyTorch Image Models*) builds hundreds of ImageNet architectures by
name, Inception v3 among them (the network of Kurakin et al., ICLR 2017). The registered
model ``timm`` is a *family*: ``--arch timm:inception_v3`` builds
``timm.create_model("inception_v3", pretrained=False)``. Nothing is downloaded: weights
come from a file through ``advframe import`` (a timm / Hugging Face ``model.safetensors``),
and a checkpoint records ``model: "timm"`` with the name in its config, so
``advframe eval --model X.safetensors`` rebuilds it with no flag.

timm's networks expect normalised inputs; the normalisation and input size they were
trained with are in the network's ``pretrained_cfg``, which :func:`timm_preprocessing`
reads so that ``advframe import`` records them in the checkpoint.
"""

from __future__ import annotations

import difflib
from typing import Any

from torch import nn

from advframe.errors import ParameterError

INSTALL = 'pip install "advframe[timm]"'


def _timm() -> Any:
    """The timm module, or a one-line error saying how to install it (and why it did not import)."""
    try:
        import timm
    except ImportError as exc:  # also a timm whose own imports fail (e.g. a torchvision built for CUDA)
        raise ParameterError(f"model family 'timm' needs the timm package, which cannot be imported "
                             f"({type(exc).__name__}: {str(exc)[:120]}): {INSTALL}") from None
    return timm


def timm_model(name: str = "", num_classes: int = 0) -> nn.Module:
    """A timm network by name, with random initial weights (``--arch timm:NAME``).

    Args:
        name: the timm model name, e.g. ``inception_v3`` or ``resnet50.a1_in1k``.
        num_classes: output classes (0: the model's own, 1,000 for ImageNet models).

    Returns:
        The network; ``input_shape`` holds the input size of its ``pretrained_cfg``.

    Raises:
        ParameterError: timm missing (how to install it), no name, or a name timm does
            not know (with the closest names it knows).
    """
    if not name:
        raise ParameterError("model 'timm' needs a name: pass --arch timm:NAME, e.g. --arch timm:inception_v3")
    timm = _timm()
    base = name.split(".", 1)[0]
    known = list(timm.list_models())
    if base not in known:
        close = difflib.get_close_matches(base, known, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see timm.list_models()"
        raise ParameterError(f"timm has no model '{name}': {hint}")
    kwargs: dict[str, Any] = {"num_classes": int(num_classes)} if num_classes else {}
    net = timm.create_model(name, pretrained=False, **kwargs)
    size = timm_preprocessing(net).get("input_size")
    if size:
        net.input_shape = tuple(size)
    return net


def timm_preprocessing(net: nn.Module) -> dict[str, Any]:
    """``{"input_size", "mean", "std", "crop_pct"}`` of a timm network's ``pretrained_cfg`` (those it has)."""
    cfg = getattr(net, "pretrained_cfg", None) or getattr(net, "default_cfg", None) or {}
    out: dict[str, Any] = {}
    for key in ("input_size", "mean", "std", "crop_pct"):
        if cfg.get(key) is not None:
            value = cfg[key]
            out[key] = [float(v) if key != "input_size" else int(v) for v in value] if isinstance(
                value, (tuple, list)) else float(value)
    return out


timm_model.name = "timm"  # type: ignore[attr-defined]
timm_model.summary = ("any timm model: --arch timm:NAME, e.g. timm:inception_v3 "  # type: ignore[attr-defined]
                      "(optional extra advframe[timm]; weights through advframe import)")
timm_model.family_parameter = "name"  # type: ignore[attr-defined]
