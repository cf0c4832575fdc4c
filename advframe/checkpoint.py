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

MAGIC_HINT = "a .safetensors file written by 'advframe train' or advframe.save_checkpoint"


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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
    return out, meta
