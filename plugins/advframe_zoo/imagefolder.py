"""``imagefolder``: a class-per-subfolder tree of JPEG / PNG images, streamed from disk.

The layout of the ImageNet validation set as most people keep it (``val/n01440764/*.JPEG``)
and of torchvision's ``ImageFolder``: one folder per class, images anywhere below it.
Loading only lists the files; each image is decoded with Pillow when it is asked for
(``data[i]``), converted to RGB, resized so that its shorter side is ``resize`` pixels
(bilinear), centre-cropped to ``image_size`` and returned as float32 ``(3, H, W)`` in
[0, 1]. Evaluation reads it batch by batch, so a 50,000-image folder never sits in memory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from advframe.dataset import Dataset
from advframe.errors import DataError, Hint, ParameterError
from advframe.params import check_int
from advframe_zoo.datasets import CIFAR_EPS, balanced_order

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
"""File name endings read as images (any case); other files are ignored."""
SPLIT_FOLDERS = ("train", "val", "test")
ORDER_SEED = 20170103
"""Seed of the class-balanced order examples are served in (never change it)."""
CROP_FRACTION = 0.875
"""Default ``resize`` is ``round(image_size / CROP_FRACTION)`` (256 for 224)."""


def read_class_map(path: Path) -> list[str]:
    """The class order a class-map file gives: folder names, class 0 first.

    Two forms are read: JSON in the form of ``imagenet_class_index.json``
    (``{"0": ["n01440764", "tench"], ...}``), and text with one class per line whose first
    whitespace-separated token is the folder name (``LOC_synset_mapping.txt``:
    ``n01440764 tench, Tinca tinca``). Blank lines are skipped.

    Raises:
        DataError: for a missing, unreadable, empty or inconsistent file.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the class map '{path}' ({exc}): pass an existing text or JSON file") from None
    if text.lstrip().startswith("{"):
        classes = _json_class_map(text, path)
    else:
        classes = [line.split()[0] for line in text.splitlines() if line.strip()]
    if not classes:
        raise DataError(f"the class map '{path}' names no classes: give one folder name per line, or JSON "
                        f"like imagenet_class_index.json")
    seen: set[str] = set()
    for c in classes:
        if c in seen:
            raise DataError(f"the class map '{path}' names class '{c}' twice: each folder may have one index")
        seen.add(c)
    return classes


def _json_class_map(text: str, path: Path) -> list[str]:
    """Folder names of a JSON class map ``{"0": ["n01440764", "tench"], ...}``, by index."""
    try:
        table = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"the class map '{path}' is not valid JSON ({exc}): fix the file") from None
    form = 'like imagenet_class_index.json: {"0": ["n01440764", "tench"], ...}'
    try:
        by_index = {int(k): v for k, v in table.items()}
    except (ValueError, TypeError):
        raise DataError(f"the class map '{path}' must map class indices to [folder, name] lists, "
                        f"{form}") from None
    if sorted(by_index) != list(range(len(by_index))):
        raise DataError(f"the class map '{path}' has indices that are not 0..{len(by_index) - 1}: "
                        f"number the classes from 0 without gaps")
    classes = []
    for i in range(len(by_index)):
        entry = by_index[i]
        folder = entry[0] if isinstance(entry, (list, tuple)) and entry else entry
        if not isinstance(folder, str) or not folder:
            raise DataError(f"the class map '{path}' entry \"{i}\" is {entry!r}, not a [folder, name] list: "
                            f"write it {form}")
        classes.append(folder)
    return classes


def _is_visible(name: str) -> bool:
    """Whether a file or folder name is not hidden (``.DS_Store``, ``.ipynb_checkpoints``)."""
    return not name.startswith(".")


def list_images(folder: Path) -> list[Path]:
    """The JPEG and PNG files anywhere below ``folder``, sorted (hidden entries skipped).

    Linked folders are followed (ImageNet copies are often trees of links), each real
    folder once, so a link loop ends.
    """
    found = []
    visited: set[tuple[int, int]] = set()
    for here, dirs, files in os.walk(folder, followlinks=True):
        st = os.stat(here)
        if (st.st_dev, st.st_ino) in visited:
            dirs[:] = []
            continue
        visited.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if _is_visible(d))
        found += [Path(here) / f for f in sorted(files)
                  if _is_visible(f) and f.lower().endswith(IMAGE_SUFFIXES)]
    return found


def split_root(data_dir: Path, split: str) -> Path:
    """The class tree of ``split``: ``data_dir/<split>`` when it exists (for ``test`` also
    ``data_dir/val``), else ``data_dir`` itself.

    Raises:
        DataError: when ``data_dir`` holds other split folders but none for ``split`` (its
            split folders would otherwise be read as classes).
    """
    wanted = ("test", "val") if split == "test" else (split,)
    for sub in wanted:
        if (data_dir / sub).is_dir():
            return data_dir / sub
    others = [s for s in SPLIT_FOLDERS if (data_dir / s).is_dir()]
    if others:
        raise DataError(f"data dir '{data_dir}' holds split folders ({', '.join(others)}) but none for split "
                        f"'{split}': pass --split {others[0]}, or the class folders' parent as --data-dir")
    return data_dir


def class_order(root: Path, class_map: str | None) -> list[str]:
    """The classes of ``root`` in label order: the class map's (which may name classes the tree
    has no folder for: a part of ImageNet keeps the labels of all 1,000 classes), or the
    sorted folder names.

    Raises:
        DataError: for a tree without class folders, or a class map that does not match them.
    """
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and _is_visible(p.name))
    if not folders:
        raise DataError(f"'{root}' holds no class folders: arrange the images one folder per class "
                        f"(e.g. val/n01440764/*.JPEG) and pass the folders' parent as --data-dir")
    if class_map is None:
        return folders
    classes = read_class_map(Path(class_map))
    have, named = set(folders), set(classes)
    if not have & named:
        raise DataError(f"no class of the class map '{class_map}' has a folder in '{root}' (the map names "
                        f"'{classes[0]}', the folders are '{folders[0]}', ...): pass the class map that belongs "
                        f"to this tree")
    extra = [f for f in folders if f not in named]
    if extra:
        more = f" and {len(extra) - 1} more" if len(extra) > 1 else ""
        raise DataError(f"folder '{extra[0]}'{more} in '{root}' is not in the class map '{class_map}': "
                        f"remove the folder, or pass the class map that belongs to this tree")
    return classes


def list_tree(root: Path, classes: list[str]) -> tuple[list[str], list[int]]:
    """The image files below each class folder (paths relative to ``root``) and their labels.

    Raises:
        DataError: when the tree, or one class folder, holds no JPEG or PNG image.
    """
    files: list[str] = []
    labels: list[int] = []
    empty: list[str] = []
    for label, cls in enumerate(classes):
        if not (root / cls).is_dir():  # a class of the map that this part of the data set does not hold
            continue
        found = list_images(root / cls)
        if not found:
            empty.append(cls)
        files += [p.relative_to(root).as_posix() for p in found]
        labels += [label] * len(found)
    if not files:
        raise DataError(f"'{root}' holds no JPEG or PNG images ({', '.join(IMAGE_SUFFIXES)}) in its class "
                        f"folders: check --data-dir")
    if empty:
        more = f" (and {len(empty) - 1} more)" if len(empty) > 1 else ""
        raise DataError(f"class folder '{root / empty[0]}'{more} holds no JPEG or PNG images: add its images, "
                        f"or remove the folder (and its class-map line)")
    return files, labels


MAX_ASPECT = 4
"""Longest side over shortest side kept before resizing (see :func:`decode_image`)."""


def decode_image(path: Path, image_size: int, resize: int) -> torch.Tensor:
    """One image as float32 ``(3, image_size, image_size)`` in [0, 1].

    Decoded with Pillow and converted to RGB; resized (bilinear) so that its shorter side is
    ``resize`` pixels, the longer one scaled alike and truncated, as torchvision's
    ``Resize(resize)`` does; centre-cropped to ``image_size`` as ``CenterCrop`` does. An
    image whose shorter side is already ``resize`` is not resampled. An image more than
    :data:`MAX_ASPECT` times longer than wide (or wider than long) is first cut to the
    central :data:`MAX_ASPECT`:1 part, far outside the final crop, so it never resizes to
    millions of pixels.

    Raises:
        DataError: naming the file when Pillow cannot decode it.
    """
    from PIL import Image  # here, not at import: every advframe process loads this plugin

    try:
        with Image.open(path) as opened:
            im = opened.convert("RGB")
        w, h = im.size
        if max(w, h) > MAX_ASPECT * min(w, h):  # a 1x10000 strip would resize to 256x2,560,000 pixels
            keep = MAX_ASPECT * min(w, h)
            im = im.crop(((w - keep) // 2, 0, (w + keep) // 2, h) if w > h else (0, (h - keep) // 2, w, (h + keep) // 2))
            w, h = im.size
        if min(w, h) != resize:
            size = (resize, int(resize * h / w)) if w <= h else (int(resize * w / h), resize)
            im = im.resize(size, Image.Resampling.BILINEAR)
        if im.size != (image_size, image_size):
            left = int(round((im.width - image_size) / 2.0))
            top = int(round((im.height - image_size) / 2.0))
            im = im.crop((left, top, left + image_size, top + image_size))
        pixels = np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        detail = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise DataError(f"cannot decode image '{path}' ({detail}): replace the file or remove it from the "
                        f"folder") from None
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous().to(torch.float32).div_(255.0)


@dataclass(eq=False, repr=False)
class ImageFolderData:
    """The images of one split of an image folder, served one at a time in a class-balanced order.

    A map-style data set (``len(data)``, ``data[i] -> (x, label)``) that evaluation
    streams batch by batch. Examples are ordered round-robin by class (seeded, see
    :func:`advframe_zoo.datasets.balanced_order`), so every prefix (``--limit N``) is
    class-balanced; within a class the order is seeded too, and fixed for a given tree.

    Attributes:
        name: ``"imagefolder"``.
        split: the split read.
        bounds: ``(0.0, 1.0)``.
        default_eps: the eps grid ``eval`` uses when none is given (2, 4, 8, 16 / 255).
        num_classes: the number of classes (class folders).
        classes: the class folders in label order (label ``i`` is ``classes[i]``).
        root: the class tree read.
        class_map: the class-map file that gave the order, or None (sorted folder names).
        image_size: the side of the square crop.
        resize: the shorter side images are resized to before cropping.
        labels: int64 array of the labels, in the order served.
    """

    root: Path
    files: list[str]
    labels: np.ndarray
    classes: list[str]
    image_size: int
    resize: int
    class_map: str | None = None
    split: str = "test"
    name: str = "imagefolder"
    bounds: ClassVar[tuple[float, float]] = (0.0, 1.0)
    default_eps: ClassVar[tuple[float, ...]] = CIFAR_EPS

    def __post_init__(self) -> None:
        self.root, self.classes = Path(self.root), list(self.classes)
        self.image_size, self.resize = int(self.image_size), int(self.resize)
        self.labels = np.asarray(self.labels, dtype=np.int64)

    @property
    def num_classes(self) -> int:
        """The number of classes (class folders)."""
        return len(self.classes)

    @classmethod
    def balanced(cls, root: Path, files: list[str], labels: list[int], **kwargs: Any) -> "ImageFolderData":
        """The data with ``files`` (paths relative to ``root``) reordered class-balanced."""
        order = balanced_order(np.asarray(labels, dtype=np.int64), ORDER_SEED)
        return cls(root, [files[i] for i in order], np.asarray(labels, dtype=np.int64)[order], **kwargs)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """Decode example ``index``: ``(float32 tensor (3, image_size, image_size), label)``."""
        i = int(index)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"example {index} is out of range for {len(self)} images")
        return decode_image(self.root / self.files[i], self.image_size, self.resize), int(self.labels[i])

    def path(self, index: int) -> Path:
        """The file of example ``index``."""
        return self.root / self.files[int(index)]

    def take(self, limit: int | None) -> "ImageFolderData":
        """The first ``limit`` examples (all when ``limit`` is None); still class-balanced."""
        if limit is None or limit >= len(self):
            return self
        return replace(self, files=self.files[:limit], labels=self.labels[:limit])

    def describe(self) -> dict[str, Any]:
        """What was read, for the results document: root, class map, class order, sizes."""
        return {"root": str(self.root), "class_map": self.class_map, "classes": list(self.classes),
                "image_size": self.image_size, "resize": self.resize}

    def __repr__(self) -> str:
        return (f"ImageFolderData(root='{self.root}', split='{self.split}', images={len(self)}, "
                f"classes={self.num_classes}, image_size={self.image_size}, resize={self.resize})")


class ImageFolder(Dataset):
    """A class-per-subfolder tree of JPEG / PNG images (the ImageNet validation layout), streamed.

    Parameters (``--image-size`` and ``--class-map`` on the CLI, keywords in Python):

    * ``image_size``: side of the square centre crop; None means the caller must give it
      (the CLI takes it from the model's declared ``input_shape``).
    * ``resize``: the shorter side images are resized to before the crop; None:
      ``round(image_size / 0.875)`` (256 for 224).
    * ``class_map``: a file giving the class order (see :func:`read_class_map`); None:
      the sorted folder names.

    Splits: ``data_dir/<split>`` when that folder exists (``test`` also reads
    ``data_dir/val``), else ``data_dir`` itself is the class tree. :meth:`load` lists the
    files and returns an :class:`ImageFolderData`; no image is decoded until asked for.
    ``num_classes`` here is nominal (ImageNet's 1,000); the loaded data's is the number
    of class folders.
    """

    name = "imagefolder"
    summary = "JPEG/PNG images in one folder per class (ImageNet val layout) in --data-dir, decoded as streamed"
    streamed = True
    num_classes = 1000
    input_shape = ()
    bounds = (0.0, 1.0)
    default_eps = CIFAR_EPS
    splits = ("test", "val", "train")
    needs_data_dir = True
    defaults = {"image_size": None, "resize": None, "class_map": None}

    def validate(self) -> None:
        """Refuse a non-positive ``image_size``, a ``resize`` under it, and a class map that is no path."""
        owner = f"dataset '{self.name}'"
        if self.image_size is not None:
            check_int(owner, "image_size", self.image_size, 1)
        if self.resize is not None:
            check_int(owner, "resize", self.resize, max(1, self.image_size or 1))
        if self.class_map is not None and not isinstance(self.class_map, (str, os.PathLike)):
            raise ParameterError(f"{owner}: parameter class_map={self.class_map!r} must be the path of a text or "
                                 f"JSON file")

    def effective_resize(self) -> int:
        """``resize``, or ``round(image_size / 0.875)`` when it is None."""
        return int(self.resize) if self.resize is not None else int(round(self.image_size / CROP_FRACTION))

    def load(self, split: str = "test", data_dir: Path | None = None) -> ImageFolderData:  # type: ignore[override]
        """List the images of ``split`` and return them as a streamed :class:`ImageFolderData`.

        Raises:
            DataError: for a missing folder or image size, no class folders, a class map that
                does not match the folders, or no images.
        """
        if split not in self.splits:
            raise DataError(f"data set '{self.name}' has no split '{split}': use one of {', '.join(self.splits)}")
        if data_dir is None:
            raise DataError(f"data set '{self.name}' reads files from a folder: pass --data-dir DIR")
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise DataError(f"data dir '{data_dir}' does not exist: pass the folder that holds the class folders")
        if self.image_size is None:
            raise DataError(f"data set '{self.name}' needs the size to crop its images to: pass {{image_size}}, "
                            f"or a model that declares its input size", hint=Hint("image_size", "N"))
        root = split_root(data_dir, split)
        classes = class_order(root, None if self.class_map is None else os.fspath(self.class_map))
        files, labels = list_tree(root, classes)
        return ImageFolderData.balanced(root, files, labels, classes=classes, image_size=self.image_size,
                                        resize=self.effective_resize(), split=split, name=self.name,
                                        class_map=None if self.class_map is None else os.fspath(self.class_map))

    def read(self, split: str, data_dir: Path | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Refused: the images are streamed by :meth:`load`, never read into memory at once."""
        raise DataError(f"data set '{self.name}' streams its images and is not read into memory: call load(), "
                        f"which returns a map-style data set")
