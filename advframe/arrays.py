"""Your own data without a reader plugin: arrays in an ``.npz`` or ``.safetensors`` file.

The file holds ``x`` (float, ``(N, C, H, W)`` or ``(N, D)``, inside the bounds) and ``y``
(integer class indices, ``(N,)``), or per split ``x_train``/``y_train``,
``x_test``/``y_test``; optionally ``bounds`` (two numbers, default ``[0, 1]``),
``num_classes`` (default ``max(y) + 1``) and ``eps`` (the default eps grid, default
2, 4, 8 and 16 / 255 of the bounds' width). Everything is validated like a reader's
data: shapes, dtypes, NaN and values outside the bounds are refused with one line.
``.npz`` files are read with ``allow_pickle=False``; ``.safetensors`` holds no code.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advframe.dataset import LabeledData
from advframe.errors import DataError

SUFFIXES = (".npz", ".safetensors")
DEFAULT_EPS = (2 / 255, 4 / 255, 8 / 255, 16 / 255)


def is_array_file(spec: Any) -> bool:
    """Whether a ``--dataset`` value names an array file rather than a registered data set."""
    return isinstance(spec, (str, os.PathLike)) and str(spec).endswith(SUFFIXES)


def _read(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError(f"data file '{path}' does not exist: pass an .npz or .safetensors file holding x and y")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        from safetensors.numpy import load_file

        return load_file(str(path))
    except (ValueError, OSError, zipfile.BadZipFile, RuntimeError, EOFError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise DataError(f"cannot read data file '{path}' ({first[:160]}): write plain numeric arrays with "
                        f"numpy.savez or safetensors.numpy.save_file (no object arrays, no pickle)") from None
    except Exception as exc:  # safetensors raises its own error type for a damaged header
        raise DataError(f"cannot read data file '{path}' ({type(exc).__name__}): write it with numpy.savez "
                        f"or safetensors.numpy.save_file") from None


def _pick(arrays: dict[str, np.ndarray], split: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    for xk, yk in ((f"x_{split}", f"y_{split}"), ("x", "y")):
        if xk in arrays and yk in arrays:
            return arrays[xk], arrays[yk]
    raise DataError(f"data file '{path}' holds {', '.join(sorted(arrays)) or 'no arrays'}: it needs x and y "
                    f"(or x_{split} and y_{split})")


def _bounds(arrays: dict[str, np.ndarray], path: Path) -> tuple[float, float]:
    if "bounds" not in arrays:
        return 0.0, 1.0
    b = np.asarray(arrays["bounds"]).reshape(-1)
    if b.size != 2 or not np.issubdtype(b.dtype, np.number):
        raise DataError(f"data file '{path}': bounds must be two numbers [lo, hi], got shape {tuple(b.shape)}")
    lo, hi = float(b[0]), float(b[1])
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise DataError(f"data file '{path}': bounds [{lo:g}, {hi:g}] must be finite with lo < hi")
    return lo, hi


def load_array_dataset(path: str | os.PathLike[str], split: str = "test") -> LabeledData:
    """Read and validate a data set stored as arrays (see the module docstring).

    Raises:
        DataError: naming the bad array or value and how to fix it.
    """
    p = Path(path)
    arrays = _read(p)
    x, y = _pick(arrays, split, p)
    if x.ndim not in (2, 4):
        hint = " (add a channel axis: x[:, None])" if x.ndim == 3 else ""
        raise DataError(f"data file '{p}': x has shape {tuple(x.shape)}, expected (N, C, H, W) or (N, D){hint}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise DataError(f"data file '{p}': x has dtype {x.dtype}, expected numbers")
    if y.ndim != 1:
        raise DataError(f"data file '{p}': y has shape {tuple(y.shape)}, expected (N,) class indices")
    if not np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
        raise DataError(f"data file '{p}': labels y have dtype {y.dtype}: store class indices as integers "
                        f"(e.g. y.astype('int64'))")
    if x.shape[0] == 0:
        raise DataError(f"data file '{p}': split '{split}' has no examples (x has shape {tuple(x.shape)}): "
                        f"store at least one")
    lo, hi = _bounds(arrays, p)
    n_cls = int(y.max()) + 1 if y.size else 2
    if "num_classes" in arrays:
        n_cls = int(np.asarray(arrays["num_classes"]).reshape(-1)[0])
    eps = tuple(float(e) for e in np.asarray(arrays["eps"]).reshape(-1)) if "eps" in arrays \
        else tuple(e * (hi - lo) for e in DEFAULT_EPS)
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32)
    yt = torch.from_numpy(np.ascontiguousarray(y).astype(np.int64))
    if y.size and int(y.min()) < 0:
        raise DataError(f"data file '{p}': label {int(y.min())} is negative: labels are class indices 0..C-1")
    return LabeledData(xt, yt, max(n_cls, 2), (lo, hi), p.stem, split, eps).validate()
