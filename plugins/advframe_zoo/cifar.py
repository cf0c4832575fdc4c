"""CIFAR-10 and CIFAR-100, read from either of their published versions.

* The *binary version* (``cifar-10-binary.tar.gz``, ``cifar-100-binary.tar.gz``): records
  of label byte(s) followed by 3,072 pixel bytes. CIFAR-10 has one label byte; CIFAR-100
  two, coarse then fine (advframe uses the fine label).
* The *python version* (``cifar-10-python.tar.gz``, ``cifar-100-python.tar.gz``, the
  folders torchvision downloads): pickled dicts with ``b"data"`` (uint8 ``(N, 3072)``)
  and ``b"labels"`` (CIFAR-10) or ``b"fine_labels"`` / ``b"coarse_labels"`` (CIFAR-100).
  Pickle is read only through the restricted unpickler of
  :mod:`advframe_zoo.restricted_pickle`, which admits numpy arrays, lists, dicts, bytes
  and strings and refuses every other global before it is called.

In both versions each image row holds 1,024 red, 1,024 green, then 1,024 blue bytes,
each plane row-major 32×32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from advframe.dataset import Dataset
from advframe.errors import DataError
from advframe_zoo.datasets import CIFAR_EPS, _read_bytes, _to_tensors
from advframe_zoo.restricted_pickle import load_restricted

PIXELS = 3 * 32 * 32
CIFAR_RECORD = 1 + PIXELS
"""Bytes of one CIFAR-10 binary record (one label byte, 3,072 pixels)."""
CIFAR100_RECORD = 2 + PIXELS
"""Bytes of one CIFAR-100 binary record (coarse and fine label bytes, 3,072 pixels)."""
COARSE_CLASSES = 20
"""CIFAR-100's superclasses (the first label byte of a binary record)."""
CIFAR_FILES = {
    "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    "test": ("test_batch.bin",),
}
"""The CIFAR-10 binary version's files of each split."""
CIFAR_PY_FILES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
"""The CIFAR-10 python version's files of each split."""


@dataclass(frozen=True)
class Layout:
    """One published version of a CIFAR data set: where its files lie and how they are read.

    Attributes:
        version: ``"binary"`` or ``"python"``.
        folder: the folder its archive extracts to (``cifar-10-batches-bin``...).
        archive: the archive's name, for messages.
        files: the files of each split.
        label: the label key of a python batch (``b"labels"``), or the number of label
            bytes of a binary record (the last one is the label used).
    """

    version: str
    folder: str
    archive: str
    files: dict[str, tuple[str, ...]]
    label: bytes | int

    def holds(self, folder: Path) -> bool:
        """Whether ``folder`` holds any file of this version."""
        return any((folder / f).is_file() for names in self.files.values() for f in names)


def read_cifar_bin(path: Path, label_bytes: int = 1, dataset: str = "CIFAR-10") -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR binary batch.

    Args:
        path: the batch file.
        label_bytes: label bytes before each record's pixels (1: CIFAR-10; 2: CIFAR-100,
            coarse (0..19, checked) then fine).
        dataset: the data set's name, for messages.

    Returns:
        ``(images uint8 (N, 3, 32, 32), labels uint8 (N,))``, the labels being each
        record's last label byte (CIFAR-100's fine label).

    Raises:
        DataError: for a file that is not a whole number of records, or a coarse label over 19.
    """
    record = label_bytes + PIXELS
    raw = _read_bytes(path)
    if len(raw) == 0 or len(raw) % record:
        raise DataError(f"'{path}' has {len(raw)} bytes, not a multiple of the {record}-byte {dataset} record: "
                        f"the file is truncated or not a {dataset} binary batch, download the binary version again")
    rec = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
    if label_bytes == 2 and int(rec[:, 0].max()) >= COARSE_CLASSES:
        raise DataError(f"'{path}' holds coarse label {int(rec[:, 0].max())}, outside 0..{COARSE_CLASSES - 1}: "
                        f"not a {dataset} binary batch, download the binary version again")
    return rec[:, label_bytes:].reshape(-1, 3, 32, 32), rec[:, label_bytes - 1]


def _entry(batch: dict[Any, Any], key: bytes) -> Any:
    """``batch[key]``, also under the ``str`` key (a batch pickled again by Python 3); None when absent."""
    if key in batch:
        return batch[key]
    return batch.get(key.decode("ascii"))


def read_cifar_pickle(path: Path, label_key: bytes, dataset: str = "CIFAR-10") -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR python batch through the restricted unpickler.

    Args:
        path: the batch file (``data_batch_1``, ``test_batch``, ``train``, ``test``).
        label_key: the key of the labels (``b"labels"``; CIFAR-100: ``b"fine_labels"``).
        dataset: the data set's name, for messages.

    Returns:
        ``(images uint8 (N, 3, 32, 32), labels int64 (N,))``.

    Raises:
        DataError: for a refused pickle, or a batch without the expected entries and shapes.
    """
    batch = load_restricted(path)
    if not isinstance(batch, dict):
        raise DataError(f"'{path}' holds a {type(batch).__name__}, not the dict of a {dataset} python batch: "
                        f"download the python version again")
    data, labels = _entry(batch, b"data"), _entry(batch, label_key)
    for key, value in ((b"data", data), (label_key, labels)):
        if value is None:
            keys = ", ".join(sorted(repr(k) for k in batch)[:8]) or "none"
            raise DataError(f"'{path}' has no {key!r} entry (its keys: {keys}): not a {dataset} python batch, "
                            f"download the python version again")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
        what = (f"a {data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray)
                else f"a {type(data).__name__}")
        raise DataError(f"'{path}' entry b'data' is {what}, expected uint8 of shape (N, {PIXELS}): "
                        f"not a {dataset} python batch, download the python version again")
    if not isinstance(labels, (list, tuple, np.ndarray)):
        raise DataError(f"'{path}' entry {label_key!r} is a {type(labels).__name__}, expected a list of class "
                        f"indices: download the python version again")
    lab = np.asarray(labels)
    if lab.ndim != 1 or (lab.size and not np.issubdtype(lab.dtype, np.integer)):
        raise DataError(f"'{path}' entry {label_key!r} is not a flat list of integers (dtype {lab.dtype}, "
                        f"shape {lab.shape}): download the python version again")
    if len(lab) != len(data):
        raise DataError(f"'{path}' holds {len(data)} images but {len(lab)} labels: the file is damaged, "
                        f"download the python version again")
    return data.reshape(-1, 3, 32, 32), lab.astype(np.int64)


class CifarDataset(Dataset):
    """A CIFAR data set read from whichever of its :attr:`layouts` the data folder holds.

    The folder given with ``--data-dir`` is searched first, then the folders the archives
    extract to (``cifar-10-batches-py``...), in the order of :attr:`layouts`.
    """

    input_shape = (3, 32, 32)
    bounds = (0.0, 1.0)
    default_eps = CIFAR_EPS
    splits = ("train", "test")
    needs_data_dir = True
    title: ClassVar[str] = ""
    layouts: ClassVar[Sequence[Layout]] = ()

    def locate(self, data_dir: Path) -> tuple[Path, Layout]:
        """The folder that holds one of the layouts, and that layout.

        Raises:
            DataError: naming both versions when no folder holds either.
        """
        for folder in [data_dir] + [data_dir / layout.folder for layout in self.layouts]:
            for layout in self.layouts:
                if folder.is_dir() and layout.holds(folder):
                    return folder, layout
        subs = " or ".join(layout.folder for layout in self.layouts)
        versions = " or ".join(f"the {lay.version} version ({lay.archive}: {', '.join(_file_span(lay))})"
                                for lay in self.layouts)
        raise DataError(f"data set '{self.name}' finds no {self.title} files in '{data_dir}' (nor in a {subs} "
                        f"folder there): extract either {versions} into that folder")

    def read(self, split: str, data_dir: Path | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels of ``split``, from the version :meth:`locate` finds; labels range-checked."""
        if data_dir is None:
            raise DataError(f"data set '{self.name}' reads files from a folder: pass --data-dir DIR")
        base, layout = self.locate(Path(data_dir))
        images, labels = [], []
        for fname in layout.files[split]:
            path = base / fname
            if not path.is_file():
                raise DataError(f"data set '{self.name}': file '{fname}' is missing from '{base}' (which holds "
                                f"other files of the {self.title} {layout.version} version): download the "
                                f"{self.title} {layout.version} version ({layout.archive}) and extract it there")
            im, lab = self.read_file(path, layout)
            top, low = int(lab.max(initial=0)), int(lab.min(initial=0))
            if low < 0 or top >= self.num_classes:
                bad = low if low < 0 else top
                raise DataError(f"'{path}' holds label {bad}, outside 0..{self.num_classes - 1}: not a {self.title} "
                                f"batch{self.wrong_labels_hint(layout)}")
            images.append(im)
            labels.append(lab)
        return _to_tensors(np.concatenate(images), np.concatenate(labels))

    def read_file(self, path: Path, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
        """Images and labels of one batch file of ``layout``."""
        if layout.version == "binary":
            return read_cifar_bin(path, int(layout.label), self.title)
        return read_cifar_pickle(path, bytes(layout.label), self.title)

    def wrong_labels_hint(self, layout: Layout) -> str:
        """What to add to the message about an out-of-range label (``""`` for nothing)."""
        return ""


def _file_span(layout: Layout) -> list[str]:
    """The first and last file names of a layout, for messages."""
    names = [f for split in ("train", "test") for f in layout.files.get(split, ())]
    return [names[0], "...", names[-1]] if len(names) > 2 else names


CIFAR10_LAYOUTS = (
    Layout("binary", "cifar-10-batches-bin", "cifar-10-binary.tar.gz", CIFAR_FILES, 1),
    Layout("python", "cifar-10-batches-py", "cifar-10-python.tar.gz", CIFAR_PY_FILES, b"labels"),
)
CIFAR100_LAYOUTS = (
    Layout("binary", "cifar-100-binary", "cifar-100-binary.tar.gz", {"train": ("train.bin",), "test": ("test.bin",)},
           2),
    Layout("python", "cifar-100-python", "cifar-100-python.tar.gz", {"train": ("train",), "test": ("test",)},
           b"fine_labels"),
)


class CIFAR10(CifarDataset):
    """CIFAR-10 from the binary version (``data_batch_1.bin`` ... ``test_batch.bin``) or the
    python version (torchvision's ``cifar-10-batches-py``: ``data_batch_1`` ... ``test_batch``).

    The data folder is searched first, then its ``cifar-10-batches-bin`` and
    ``cifar-10-batches-py`` subfolders; where a folder holds both versions, the binary
    one is read.
    """

    name = "cifar10"
    summary = ("CIFAR-10 read from the binary (data_batch_1.bin ...) or python (cifar-10-batches-py) "
               "version in --data-dir")
    num_classes = 10
    title = "CIFAR-10"
    layouts = CIFAR10_LAYOUTS

    def wrong_labels_hint(self, layout: Layout) -> str:
        """A CIFAR-100 binary batch read as CIFAR-10 shows labels over 9: say so."""
        return " (CIFAR-100 uses two label bytes)" if layout.version == "binary" else ""


class CIFAR100(CifarDataset):
    """CIFAR-100 (fine labels, 100 classes) from the binary version (``cifar-100-binary``:
    ``train.bin``, ``test.bin``) or the python version (torchvision's ``cifar-100-python``:
    ``train``, ``test``).

    The data folder is searched first, then its ``cifar-100-binary`` and
    ``cifar-100-python`` subfolders; where a folder holds both versions, the binary one
    is read. Binary records carry the coarse label byte, then the fine one.
    """

    name = "cifar100"
    summary = ("CIFAR-100 (fine labels) read from the binary (cifar-100-binary) or python (cifar-100-python) "
               "version in --data-dir")
    num_classes = 100
    title = "CIFAR-100"
    layouts = CIFAR100_LAYOUTS
