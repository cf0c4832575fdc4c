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
refused with a :class:`~advframe.errors.DataError` before it is called. ``numpy.ndarray``
resolves to a name that only ``_reconstruct`` accepts, and ``_reconstruct`` makes only the
empty array numpy's own pickles start from, so no array is larger than the bytes of the
file that fill it. After the load, arrays of Python objects (``dtype=object``), arrays the
file cannot hold (zero strides) and absurd numbers of items are refused.
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


class NdarrayName:
    """What ``numpy.ndarray`` resolves to: a name that only :func:`_empty_array` accepts.

    numpy pickles an array as ``_reconstruct(ndarray, (0,), b"b")`` followed by its state,
    whose data is bytes of the file. The class itself is never handed out: called through
    a pickle's REDUCE, ``ndarray(shape, dtype, buffer, offset, strides)`` would allocate any
    size, or view a few bytes with zero strides as a huge array.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        raise pickle.UnpicklingError("numpy.ndarray called directly, not through _reconstruct")


def _empty_array(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's ``_reconstruct`` as numpy's own pickles call it: an empty array, filled by its state."""
    if subtype is not NdarrayName or tuple(shape) != (0,):
        raise pickle.UnpicklingError(f"_reconstruct called with shape {tuple(shape)!r}, not numpy's own (0,)")
    return _reconstruct(np.ndarray, (0,), dtype)


ALLOWED: dict[tuple[str, str], Callable[..., Any] | type] = {
    ("numpy.core.multiarray", "_reconstruct"): _empty_array,
    ("numpy._core.multiarray", "_reconstruct"): _empty_array,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): NdarrayName,
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
            asked = f"{module}.{name}".encode("unicode_escape").decode("ascii")[:120]  # no control characters
            raise DataError(f"'{self.source}' holds a pickle that asks for {asked}; advframe reads only "
                            f"{WHAT_IS_READ} from CIFAR batches: download the file again") from None

    def persistent_load(self, pid: Any) -> Any:
        """Refuse persistent ids (a CIFAR batch has none)."""
        raise DataError(f"'{self.source}' holds a pickle with a persistent id; advframe reads only {WHAT_IS_READ} "
                        f"from CIFAR batches: download the file again")


MAX_NODES = 1_000_000
"""Most containers and items a batch may hold (a CIFAR-10 batch holds about 20,000)."""


def _refuse_objects(obj: Any, source: str, size: int) -> None:
    """Raise :class:`DataError` if ``obj`` holds an array of Python objects, an array whose data the
    file cannot hold (``size`` bytes: zero strides or a view of a few bytes), or too many items.

    Shared containers are visited once: a pickle's memo can make a small file a deep DAG.
    """
    seen: set[int] = set()
    stack: list[Any] = [obj]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if len(seen) > MAX_NODES:
            raise DataError(f"'{source}' holds more than {MAX_NODES:,} objects: not a CIFAR batch, "
                            f"download the file again")
        if isinstance(item, np.ndarray):
            if item.dtype.hasobject:
                raise DataError(f"'{source}' holds an array of Python objects (dtype {item.dtype}); advframe reads "
                                f"only numeric arrays from CIFAR batches: download the file again")
            if item.nbytes > size or (item.size > 1 and 0 in item.strides):
                raise DataError(f"'{source}' holds an array of {item.nbytes:,} bytes that the {size:,}-byte file "
                                f"cannot hold (a view with zero strides): download the file again")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)


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
    _refuse_objects(obj, source, len(data))
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
