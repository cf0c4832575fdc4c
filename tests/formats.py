"""Files in the real formats users bring, written for tests and for the docs run: CIFAR python batches
pickled as torchvision lays them out, image folders of PNG and JPEG, RobustBench-style ``.pt`` files."""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np

PER_FILE = 4
"""Images per CIFAR batch file the tests write."""


class Py2Pickler(pickle._Pickler):
    """Writes pickles as Python 2 did: every str and bytes as a Python 2 ``str`` (BINSTRING)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str


def dump(obj, path: Path, protocol) -> None:
    """Pickle ``obj`` to ``path``: ``protocol`` an int, None (the default) or "py2" (as the real files)."""
    if protocol == "py2":
        buf = io.BytesIO()
        Py2Pickler(buf, protocol=2).dump(obj)
        path.write_bytes(buf.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    else:
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=protocol)


def cifar_batch(images: np.ndarray, labels, label_key: bytes = b"labels", extra: dict | None = None) -> dict:
    """A python-version batch dict as torchvision reads it (Python 2 str keys load as bytes)."""
    batch = {b"batch_label": b"training batch 1 of 5", label_key: [int(v) for v in labels],
             b"data": images.reshape(len(images), -1).astype(np.uint8),
             b"filenames": [f"img_{i}.png".encode() for i in range(len(images))]}
    batch.update(extra or {})
    return batch


def make_cifar10_py(root: Path, protocol=2, seed=0, per_file: int = PER_FILE) -> dict:
    """``root/cifar-10-batches-py`` with data_batch_1..5, test_batch and batches.meta (``per_file`` images each)."""
    from advframe_zoo import cifar

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for split, files in cifar.CIFAR_PY_FILES.items():
        images = rng.integers(0, 256, size=(len(files), per_file, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, size=(len(files), per_file))
        for name, im, lab in zip(files, images, labels):
            dump(cifar_batch(im, lab), folder / name, protocol)
        out[split] = (images.reshape(-1, 3, 32, 32), labels.reshape(-1))
    dump({b"label_names": [b"airplane"] * 10, b"num_cases_per_batch": per_file}, folder / "batches.meta", protocol)
    return out


COLOURS = {"cat": (200, 30, 30), "dog": (30, 200, 30), "eel": (30, 30, 200)}


def make_tree(root: Path, counts=(4, 3, 2), size=(8, 8), classes: dict[str, tuple[int, int, int]] | None = None
              ) -> dict[str, np.ndarray]:
    """Class folders (default cat/dog/eel) with ``counts`` images each, PNG and JPEG mixed; returns PNG pixels."""
    from PIL import Image

    rng = np.random.default_rng(7)
    pixels = {}
    for (cls, colour), n in zip((classes or COLOURS).items(), counts):
        (root / cls).mkdir(parents=True)
        for k in range(n):
            if k % 2 == 0:
                arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / cls / f"img{k}.png")
                pixels[f"{cls}/img{k}.png"] = arr
            else:
                Image.new("RGB", size, colour).save(root / cls / f"img{k}.JPEG", quality=95)
        (root / cls / "notes.txt").write_text("not an image")
    return pixels


SYNSETS = {"n01440764": (200, 120, 40), "n01443537": (230, 150, 20), "n01484850": (90, 110, 140)}
"""Three ImageNet classes (tench, goldfish, great white shark) and a colour for each one's stand-in images."""


def calibrate_batch_norm(net, side: int = 32, seed: int = 0) -> None:
    """Set every batch norm's running statistics to those of random images, as training leaves them.

    Random weights with fresh statistics (mean 0, variance 1) shrink the activations layer by
    layer into denormal floats, which CPUs compute many times slower: a trained network keeps
    them near 1, and so does this.
    """
    import torch

    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the calibration pass
    net.train()
    with torch.no_grad():
        net(torch.rand(16, 3, side, side, generator=torch.Generator().manual_seed(seed)))
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.1
    net.eval()


def write_robustbench_pt(path: Path, arch: str, normalize: tuple[list[float], list[float]] | None = None,
                         **config) -> None:
    """A RobustBench-style ``.pt`` file: the random-weight state dict of ``arch`` under DataParallel's
    ``module.`` prefix, with ``mu`` / ``sigma`` buffers when ``normalize`` is given (as Wong2020Fast's)."""
    import torch

    import advframe

    net = advframe.build_model(arch, **config)
    calibrate_batch_norm(net, side=32 if arch != "resnet50" else 64)
    state = dict(net.state_dict())
    if normalize is not None:
        state["mu"] = torch.tensor(normalize[0]).view(1, 3, 1, 1)
        state["sigma"] = torch.tensor(normalize[1]).view(1, 3, 1, 1)
    torch.save({f"module.{k}": v for k, v in state.items()}, path)


def write_stand_ins(folder: Path, inception: bool = False) -> None:
    """The files docs/cifar-imagenet.md names, made small: ``data/cifar-10-batches-py``, ``Wong2020Fast.pt``,
    ``imagenet/val`` (3 classes), ``LOC_synset_mapping.txt`` and, with ``inception``, a random-weight
    ``inception_v3_google-0cc3c7bd.pth`` (100 MB)."""
    import torch

    make_cifar10_py(folder / "data", per_file=8)
    write_robustbench_pt(folder / "Wong2020Fast.pt", "preact_resnet18",
                         ([0.4914, 0.4822, 0.4465], [0.2471, 0.2435, 0.2616]))
    make_tree(folder / "imagenet" / "val", counts=(2, 2, 2), size=(400, 300), classes=SYNSETS)
    names = {"n01440764": "tench, Tinca tinca", "n01443537": "goldfish, Carassius auratus",
             "n01484850": "great white shark, white shark, man-eater"}
    (folder / "LOC_synset_mapping.txt").write_text("".join(f"{k} {v}\n" for k, v in names.items()))
    if inception:
        import advframe

        net = advframe.build_model("inception_v3")
        calibrate_batch_norm(net, side=299)
        torch.save(net.state_dict(), folder / "inception_v3_google-0cc3c7bd.pth")
