"""``advframe import``: foreign weights, read once without running code, into an advframe checkpoint.

Reads a RobustBench ``.pt`` file (a state dict, or ``{"state_dict": ...}``, with
``module.`` / ``model.`` prefixes; RobustBench's ImageNet models also carry their
normalisation as ``normalize.mean`` / ``normalize.std``) or a timm / Hugging Face
``model.safetensors``, and writes an advframe checkpoint holding the architecture's
registry name and config, the normalisation, the input size, the data set and the threat
model the weights were trained for, so that ``advframe eval --model X.safetensors``
needs no other flag.

**No code runs.** ``.pt`` files are pickles: they are read only with
``torch.load(weights_only=True)``, whose unpickler admits tensors and plain containers and
refuses any other global before calling it; a refused file is named in one line.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advframe.errors import CheckpointError, ParameterError
from advframe.model import (WRAPPER_PREFIXES, Normalized, network_and_normalization, strip_prefix,
                            without_initialisation)
from advframe.threat import ThreatModel

NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net")
"""Keys under which training scripts nest the state dict (``{"state_dict": ..., "epoch": ...}``)."""
NORMALIZER_KEYS = (("normalize.mean", "normalize.std"), ("mu", "sigma"), ("mean", "std"))
"""Where RobustBench's files keep a normalisation: its ImageNet wrapper ``Sequential(normalize=
ImageNormalizer, model=net)``, and the ``mu`` / ``sigma`` buffers of CIFAR models that normalise
inside ``forward`` (e.g. Wong2020Fast)."""


@dataclass
class Imported:
    """What :func:`import_weights` wrote.

    Attributes:
        path: the checkpoint written.
        model: the registry name of the architecture.
        config: its constructor keywords.
        parameters: number of parameters loaded.
        tensors: number of state-dict entries loaded.
        normalize: the recorded ``{"mean", "std"}``, or None.
        normalize_source: where it came from: ``"--normalize"``, ``"checkpoint"``,
            ``"timm pretrained_cfg"`` or ``"none"``.
        input_shape: the recorded input shape.
        dataset: the recorded data set name.
        threat_model: the recorded threat model, or None.
        source: the source file's name, format and SHA-256.
        prefixes_removed: wrapper prefixes taken off the keys.
    """

    path: Path
    model: str
    config: dict[str, Any]
    parameters: int
    tensors: int
    normalize: dict[str, list[float]] | None
    normalize_source: str
    input_shape: list[int]
    dataset: str | None
    threat_model: dict[str, Any] | None
    source: dict[str, str]
    prefixes_removed: list[str] = field(default_factory=list)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _refusal(message: str) -> str:
    """What a ``weights_only`` load refused (``the global posix.system``), from torch's message."""
    found = re.search(r"GLOBAL ([\w.]+)", message)
    if found:
        return f"asks for {found.group(1)}"
    detail = re.search(r"WeightsUnpickler error:\s*(.+)", message)
    return f"holds what torch's weights-only loader refuses ({detail.group(1).strip()[:80]})" if detail else \
        "holds objects other than tensors"


def read_state(src: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict of a ``.pt`` (``torch.save``) or ``.safetensors`` file, and the format's name.

    Raises:
        CheckpointError: a missing or unreadable file, a pickle that asks for code or for
            objects other than tensors (refused before anything runs), or contents that
            are not a state dict.
    """
    if not src.is_file():
        raise CheckpointError(f"'{src}' does not exist: pass a RobustBench .pt file or a model.safetensors")
    with open(src, "rb") as f:
        head = f.read(8)
    if src.suffix == ".safetensors" or (len(head) == 8 and head[:2] not in (b"PK",) and head[:1] != b"\x80"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(src), device="cpu"), "safetensors"
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
            raise CheckpointError(f"'{src}' is neither a torch.save (.pt) file nor a readable safetensors file "
                                  f"({first}): pass the weights file itself") from None
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols; the outcome is all that matters
            warnings.simplefilter("ignore")
            obj = torch.load(src, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"'{src}' is a pickle that {_refusal(str(exc))}: refused, and "
                              f"nothing in it ran (advframe reads .pt files with torch.load(weights_only=True), "
                              f"which admits tensors and plain containers only); save model.state_dict() "
                              f"instead of the whole model") from None
    except Exception as exc:  # noqa: BLE001 - torch's unpickler fails on damaged data in many ways
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:160].encode("unicode_escape").decode("ascii")
        raise CheckpointError(f"'{src}' cannot be read as a torch.save file ({first}): the file is damaged or "
                              f"not a .pt file; download it again") from None
    return state_dict_of(obj, src), "torch.save"


def state_dict_of(obj: Any, src: Path) -> dict[str, torch.Tensor]:
    """The state dict inside what a ``.pt`` file held: itself, or nested under :data:`NESTED_KEYS`.

    Raises:
        CheckpointError: when no mapping of names to tensors is found.
    """
    for _ in range(3):
        if isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
            nested = next((obj[k] for k in NESTED_KEYS if isinstance(obj.get(k), dict)), None)
            if nested is None:
                break
            obj = nested
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                       for k, v in obj.items()):
        kind = type(obj).__name__
        keys = ", ".join(map(str, list(obj)[:5])) if isinstance(obj, dict) else ""
        raise CheckpointError(f"'{src}' holds a {kind}{f' with keys {keys}' if keys else ''}, not a state dict "
                              f"(names -> tensors, possibly under 'state_dict'): save model.state_dict()")
    return dict(obj)


def unwrap_keys(state: dict[str, torch.Tensor], expected: list[str]
                ) -> tuple[dict[str, torch.Tensor], dict[str, list[float]] | None, list[str]]:
    """``state`` without wrapper prefixes, a normalisation it carries taken out as ``{"mean", "std"}``.

    Prefixes (``module.``, ``model.``, ``_orig_mod.``) are removed while every key carries
    one and the architecture expects none of the keys; a normaliser pair of
    :data:`NORMALIZER_KEYS` is taken out whenever the architecture does not hold it.

    Returns:
        ``(state, normalisation or None, what was removed)``.
    """
    removed: list[str] = []
    norm = None
    want = set(expected)
    for _ in range(4):
        for pair in NORMALIZER_KEYS if norm is None else ():
            if all(k in state for k in pair) and not any(k in want for k in pair):
                norm = {"mean": [float(v) for v in state[pair[0]].flatten()],
                        "std": [float(v) for v in state[pair[1]].flatten()]}
                state = {k: v for k, v in state.items() if k not in pair}
                removed.append(" and ".join(pair))
                break
        state, prefix = strip_prefix(state, expected, (*WRAPPER_PREFIXES, "model."))
        if prefix is None:
            break
        removed.append(prefix)
    return state, norm, removed


def _dataset_for(shape: list[int], classes: int | None) -> str:
    """The data set an imported model is evaluated on by default: CIFAR for 32×32 inputs, else imagefolder."""
    if shape[-2:] == [32, 32]:
        return "cifar100" if classes == 100 else "cifar10"
    return "imagefolder"


def _classes(net: nn.Module) -> int | None:
    last = [m for m in net.modules() if isinstance(m, nn.Linear)]
    return int(last[-1].out_features) if last else None


def import_weights(src: str | Path, arch: str, out: str | Path, *, config: dict[str, Any] | None = None,
                   normalize: tuple[list[float], list[float]] | None = None, dataset: str | None = None,
                   threat: ThreatModel | None = None, image_size: int | None = None) -> Imported:
    """Import foreign weights into an advframe checkpoint (see the module docstring).

    Args:
        src: a RobustBench ``.pt`` file or a timm / Hugging Face ``model.safetensors``.
        arch: a registered architecture (``wrn_28_10``) or family member (``timm:inception_v3``).
        out: the ``.safetensors`` checkpoint to write (atomically).
        config: constructor keywords of the architecture (e.g. ``{"num_classes": 100}``).
        normalize: ``(mean, std)`` the network expects; default: the checkpoint's own
            normaliser, else a timm network's ``pretrained_cfg``, else none.
        dataset: the data set to evaluate on by default (default: ``cifar10`` /
            ``cifar100`` for 32×32 inputs by the class count, else ``imagefolder``).
        threat: the threat model the weights were trained for (None: none recorded).
        image_size: the input side, when the architecture declares none or another.

    Returns:
        What was written (:class:`Imported`).

    Raises:
        CheckpointError: an unreadable or refused source, or weights that do not fit.
        ParameterError: an unknown architecture or bad option.
        UnknownNameError: an unknown architecture name (with the closest).
    """
    import advframe
    from advframe import plugins
    from advframe.model_io import load_weights

    src, out = Path(src), Path(out)
    family = plugins.registry().family(arch)
    name, cfg = family if family is not None else (arch, {})
    cfg = {**cfg, **(config or {})}
    state, fmt = read_state(src)
    net = network_and_normalization(without_initialisation(lambda: advframe.build_model(name, **cfg)))[0]
    state, found_norm, removed = unwrap_keys(state, list(net.state_dict()))
    load_weights(net, state, f"'{src}'")
    shape = [int(v) for v in getattr(net, "input_shape", ()) or ()]
    if image_size is not None:
        shape = [shape[0] if shape else 3, int(image_size), int(image_size)]
    if not shape:
        raise ParameterError(f"architecture '{arch}' declares no input size: pass --image-size N")
    norm_source, chosen = _normalisation(net, normalize, found_norm, timm=family is not None and name == "timm")
    model: nn.Module = Normalized(net, chosen["mean"], chosen["std"]) if chosen else net
    dataset = dataset or _dataset_for(shape, _classes(net))
    source = {"file": src.name, "format": fmt, "sha256": _sha256(src)}
    recorded = threat.to_dict() if threat is not None else None
    meta: dict[str, Any] = {"threat_model": recorded, "input_shape": shape, "imported_from": source}
    if family is not None and name == "timm":
        from advframe_zoo.timm_models import timm_preprocessing

        crop = timm_preprocessing(net).get("crop_pct")
        if isinstance(crop, float):
            meta["crop_pct"] = crop  # image folders are resized to image_size / crop_pct
    advframe.save_model(model, out, dataset=dataset, metadata=meta)
    _verify(out, net)
    return Imported(out, name, cfg, sum(p.numel() for p in net.parameters()), len(state), chosen, norm_source,
                    shape, dataset, recorded, source, removed)


def _normalisation(net: nn.Module, given: tuple[list[float], list[float]] | None,
                   found: dict[str, list[float]] | None, timm: bool) -> tuple[str, dict[str, list[float]] | None]:
    """``(where it came from, {"mean", "std"} or None)``: the user's, else the file's, else timm's ``pretrained_cfg``."""
    if given is not None:
        return "--normalize", {"mean": list(given[0]), "std": list(given[1])}
    if found is not None:
        return "checkpoint", found
    if timm:
        from advframe_zoo.timm_models import timm_preprocessing

        pre = timm_preprocessing(net)
        if "mean" in pre and "std" in pre:
            return "timm pretrained_cfg", {"mean": pre["mean"], "std": pre["std"]}
    return "none", None


def _verify(out: Path, net: nn.Module) -> None:
    """Refuse a written checkpoint whose weights differ from those loaded (read back from disk)."""
    from advframe.checkpoint import load_checkpoint

    mine = {f"model.{k}": v for k, v in net.state_dict().items()}
    back = load_checkpoint(out)[0]
    if set(mine) != set(back) or any(not torch.equal(mine[k], back[k]) for k in mine):
        raise CheckpointError(f"'{out}' does not read back the weights that were imported: the disk may be "
                              f"full or failing; import again")


def describe(result: Imported) -> dict[str, Any]:
    """A JSON-able summary of an import (for ``--json`` and tests)."""
    out = dict(result.__dict__)
    out["path"] = str(result.path)
    return json.loads(json.dumps(out))
