"""A restricted unpickler for the pickled batches of the CIFAR python versions.

torchvision's ``cifar-10-batches-py`` and ``cifar-100-python`` folders hold pickles: a
pickle may name any importable callable and have it called while it is read, so a planted
file could run code (``os.system``, ``open``...). advframe never calls a plain
``pickle.load``: :func:`load_restricted` reads a batch with :class:`RestrictedUnpickler`,
which resolves only the globals such a batch needs, from a fixed table (nothing is
imported by the name the file gives):

* numpy arrays: ``numpy.core.multiarray._reconstruct`` (the spelling of the Python 2
  files and of numpy 1) and ``numpy._core.multiarray._reconstruct`` (numpy 2),
  ``numpy.ndarray``, ``numpy.dtype``, and numpy's ``_frombuffer`` (what numpy itself
  writes at pickle protocol 5, under ``numpy.core.numeric`` and ``numpy._core.numeric``);
* ``_codecs.encode``, which Python 3 pickles of ``bytes`` at protocol 2 use (admitted
  only as ``encode(text, "latin1")``).

Dicts, lists, tuples, strings, bytes and numbers need no global. Any other global is
refused with a :class:`~advframe.errors.DataError` before it is called, and arrays of
Python objects (``dtype=object``) are refused after the load.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np

from advframe.errors import DataError

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
    from numpy._core.numeric import _frombuffer
except ImportError:  # pragma: no cover - numpy 1
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    from numpy.core.numeric import _frombuffer  # type: ignore[no-redef]

WHAT_IS_READ = "numpy arrays, lists, dicts, bytes and strings"


def _latin1_encode(text: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as Python 3 pickles of ``bytes`` use it: ``encode(str, "latin1")`` only."""
    if not isinstance(text, str) or encoding.replace("-", "").replace("_", "").lower() != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode called with ({type(text).__name__}, {encoding!r}), "
                                     f"not (str, 'latin1')")
    return text.encode("latin1", errors)


ALLOWED: dict[tuple[str, str], Callable[..., Any] | type] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}
"""The only globals a CIFAR batch may name, and what each resolves to."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals of :data:`ALLOWED`.

    Args:
        file: the open binary stream of the pickle.
        source: the file's name, for messages.
    """

    def __init__(self, file: io.BufferedIOBase | io.BytesIO, source: str):
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        """The allowed object for ``module.name``.

        Raises:
            DataError: for any global not in :data:`ALLOWED`, naming the file and the global.
        """
        try:
            return ALLOWED[(module, name)]
        except (KeyError, TypeError):
            raise DataError(f"'{self.source}' holds a pickle that asks for {module}.{name}; advframe reads only "
                            f"{WHAT_IS_READ} from CIFAR batches: download the file again") from None

    def persistent_load(self, pid: Any) -> Any:
        """Refuse persistent ids (a CIFAR batch has none)."""
        raise DataError(f"'{self.source}' holds a pickle with a persistent id; advframe reads only {WHAT_IS_READ} "
                        f"from CIFAR batches: download the file again")


def _refuse_objects(obj: Any, source: str, depth: int = 0) -> None:
    """Raise :class:`DataError` if ``obj`` holds an array of Python objects (or nests absurdly deep)."""
    if depth > 50:
        raise DataError(f"'{source}' holds containers nested more than 50 deep: not a CIFAR batch, "
                        f"download the file again")
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise DataError(f"'{source}' holds an array of Python objects (dtype {obj.dtype}); advframe reads only "
                            f"numeric arrays from CIFAR batches: download the file again")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _refuse_objects(key, source, depth + 1)
            _refuse_objects(value, source, depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for item in obj:
            _refuse_objects(item, source, depth + 1)


def loads_restricted(data: bytes, source: str) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (``encoding="bytes"``).

    Args:
        data: the pickle's bytes.
        source: the file's name, for messages.

    Returns:
        The unpickled object: dicts, lists, tuples, strings, bytes, numbers and numeric arrays.

    Raises:
        DataError: for a refused global, an array of objects, or a damaged pickle.
    """
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), source).load()
    except DataError:
        raise
    except RecursionError:
        raise DataError(f"'{source}' holds a pickle nested too deep to read: download the file again") from None
    except Exception as exc:  # noqa: BLE001 - a damaged pickle fails in many ways (EOFError, ValueError...)
        detail = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise DataError(f"'{source}' is not a readable pickle ({type(exc).__name__}: {detail}): "
                        f"the file is damaged, download it again") from None
    _refuse_objects(obj, source)
    return obj


def load_restricted(path: Path) -> Any:
    """Read the pickle file ``path`` with :func:`loads_restricted`.

    Raises:
        DataError: for an unreadable file, a refused global, an array of objects, or a damaged pickle.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read '{path}' ({exc}): check the file's permissions, or download it again") from None
    return loads_restricted(data, str(path))
