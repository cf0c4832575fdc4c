"""Checkpoints: safetensors files with JSON metadata, written atomically.

Never pickle. The metadata (a ``str -> str`` map in the safetensors header) holds JSON
strings: ``model`` (registry name), ``model_config``, ``dataset``, ``defense``,
``threat_model``, ``advframe_version`` and anything a caller adds, so that a model
can be rebuilt from the file alone.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from advframe.errors import CheckpointError

MAGIC_HINT = "a .safetensors file written by 'advframe train' or advframe.save_model"
TMP_SUFFIX = ".advframe-tmp"
"""Temporary files of :func:`atomic_write_bytes` are ``.<name>.<random>.advframe-tmp`` beside the target."""

PICKLE_HINT = ("convert it once, in Python, where you trust the file: "
               "model.load_state_dict(torch.load(path, weights_only=True)); advframe.save_model(model, "
               "'model.safetensors')")


def _stale_temp_files(path: Path) -> list[Path]:
    prefix = f".{path.name}."
    try:
        return [p for p in path.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(TMP_SUFFIX)]
    except OSError:
        return []


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The data goes to a temporary file ``.<name>.<random>.advframe-tmp`` in the same
    folder, then replaces ``path``. Temporary files of ``path`` left by a write that
    was killed are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in _stale_temp_files(path):
        try:
            stale.unlink()
        except OSError:
            pass
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomic text write (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def save_checkpoint(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor],
                    metadata: dict[str, Any]) -> None:
    """Save tensors and metadata (values JSON-encoded) to a safetensors file atomically."""
    from safetensors.torch import save

    from advframe import __version__

    meta = {"advframe_version": json.dumps(__version__)}
    meta.update({k: json.dumps(v) for k, v in metadata.items()})
    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write_bytes(path, save(flat, metadata=meta))


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The decoded metadata of a checkpoint, without loading tensors.

    Raises:
        CheckpointError: if the file is missing or not a safetensors file.
    """
    return load_checkpoint(path, tensors=False)[1]


def load_checkpoint(path: str | os.PathLike[str], tensors: bool = True
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load ``(tensors, metadata)`` from a safetensors checkpoint.

    Raises:
        CheckpointError: if the file is missing, not safetensors, or corrupt.
    """
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint '{p}' does not exist: pass {MAGIC_HINT}")
    _refuse_pickle(p)
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            raw = f.metadata() or {}
            out = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"'{p}' is not a readable safetensors checkpoint ({first}): pass {MAGIC_HINT}"
                              ) from None
    meta: dict[str, Any] = {}
    for k, v in raw.items():
        try:
            meta[k] = json.loads(v)
        except json.JSONDecodeError:
            meta[k] = v
        except RecursionError:
            raise CheckpointError(f"'{p}': metadata entry '{_short(k)}' is JSON nested too deeply to read: "
                                  f"re-save the model with advframe.save_model") from None
    check_metadata(p, meta)
    return out, meta


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text.encode("unicode_escape").decode("ascii")  # no terminal control characters from a file
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _refuse_pickle(p: Path) -> None:
    """Name a pickle or ``torch.save`` file given as a checkpoint, before any parser sees it."""
    try:
        with open(p, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint '{p}' ({exc.strerror}): check the path") from None
    if head[:2] == b"PK":
        kind = "a torch.save file (a zip archive holding a pickle)"
    elif head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        kind = f"a pickle file (protocol {head[1]})"
    else:
        return
    raise CheckpointError(f"'{p}' is {kind}, not safetensors: advframe never loads pickle, which can run "
                          f"code; {PICKLE_HINT}")


METADATA_TYPES: dict[str, tuple[type, ...]] = {
    "model": (str, type(None)), "model_config": (dict, type(None)), "arch": (str, type(None)),
    "dataset": (str, type(None)), "normalize": (dict, type(None)), "defense": (str, type(None)),
}
TYPE_NAMES = {str: "a string", dict: "an object", type(None): "null"}


def check_metadata(path: str | os.PathLike[str], meta: dict[str, Any]) -> None:
    """Refuse metadata entries advframe reads that have the wrong JSON type.

    Raises:
        CheckpointError: naming the entry, what it holds and what it should hold.
    """
    for key, types in METADATA_TYPES.items():
        if key in meta and not isinstance(meta[key], types):
            want = " or ".join(TYPE_NAMES[t] for t in types)
            got = {"dict": "an object", "list": "a list", "str": "a string", "bool": "a boolean",
                   "int": "a number", "float": "a number"}.get(type(meta[key]).__name__, "null")
            raise CheckpointError(f"'{path}': metadata '{key}' is {got} ({_short(meta[key])}), expected {want}: "
                                  f"re-save the model with advframe.save_model")
