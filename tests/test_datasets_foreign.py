"""Readers of the folders users already have: CIFAR python / binary versions, image folders.

Every file is written here in its real format: CIFAR python batches pickled as torchvision lays
them out (bytes keys; Python 2 style, protocol 2, the default protocol and 5), binary records,
PNG and JPEG images. Planted pickles must be refused before they run anything."""

from __future__ import annotations

import ast
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import advframe
from advframe.data_source import as_source
from advframe.errors import DataError

cifar = pytest.importorskip("advframe_zoo.cifar")
from PIL import Image  # noqa: E402  (a dependency of advframe)
from advframe_zoo.imagefolder import ImageFolder, ImageFolderData  # noqa: E402
from advframe_zoo.restricted_pickle import loads_restricted  # noqa: E402

from tests.formats import COLOURS, PER_FILE, cifar_batch, dump, make_cifar10_py, make_tree  # noqa: E402


class Payload:
    """Pickles as a call of ``func(*args)``: what a planted batch would run when read."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


# ---------------------------------------------------------------- CIFAR-10 python version


@pytest.mark.parametrize("protocol", ["py2", 2, None, 5])
def test_cifar10_python_version_round_trip(tmp_path, protocol):
    arrays = make_cifar10_py(tmp_path, protocol)
    for split in ("train", "test"):
        data = advframe.load_dataset("cifar10", split=split, data_dir=tmp_path)  # the registered reader
        images, labels = arrays[split]
        assert data.x.shape == (len(labels), 3, 32, 32) and data.x.dtype == torch.float32
        assert torch.equal(data.x, torch.from_numpy(images).float() / 255)
        assert torch.equal(data.y, torch.from_numpy(labels.astype(np.int64)))
    assert len(advframe.load_dataset("cifar10", split="train", data_dir=tmp_path)) == 5 * PER_FILE
    assert len(advframe.load_dataset("cifar10", data_dir=tmp_path / "cifar-10-batches-py")) == PER_FILE  # itself


def test_cifar10_python_pixel_layout(tmp_path):
    """Row r of b"data" holds 1,024 red, 1,024 green, 1,024 blue bytes, each plane row-major."""
    make_cifar10_py(tmp_path)
    plane = (np.arange(1024) % 251).astype(np.uint8)
    row = np.concatenate([plane, plane + 1, plane + 2]).reshape(1, 3072)  # values stay below 253
    dump(cifar_batch(row, [7]), tmp_path / "cifar-10-batches-py" / "test_batch", 2)
    data = advframe.load_dataset("cifar10", data_dir=tmp_path)
    assert data.y.tolist() == [7]
    for i, j in ((0, 0), (0, 5), (3, 9), (31, 31)):
        base = (i * 32 + j) % 251
        assert data.x[0, :, i, j].mul(255).round().long().tolist() == [base, base + 1, base + 2]


def test_cifar10_binary_version_still_read(tmp_path):
    assert type(advframe.get_dataset("cifar10")) is cifar.CIFAR10
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(2, 3, 32, 32), dtype=np.uint8)
    for name in cifar.CIFAR_FILES["train"] + cifar.CIFAR_FILES["test"]:
        (tmp_path / name).write_bytes(np.concatenate([np.array([[4], [9]], np.uint8),
                                                      images.reshape(2, -1)], axis=1).tobytes())
    data = advframe.load_dataset("cifar10", data_dir=tmp_path)
    assert data.y.tolist() == [4, 9] and torch.equal(data.x, torch.from_numpy(images).float() / 255)


def test_cifar10_python_missing_and_bad_batches(tmp_path):
    with pytest.raises(DataError, match="cifar-10-binary.tar.gz.*cifar-10-python.tar.gz"):  # neither: names both
        advframe.load_dataset("cifar10", data_dir=tmp_path)
    make_cifar10_py(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3.*python version"):
        advframe.load_dataset("cifar10", split="train", data_dir=tmp_path)
    bad = [({b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]}, "shape"),
           ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "label 10"),
           ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but 1 labels"),
           ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "float32"),
           ({b"labels": [0, 1]}, "no b'data' entry"),
           ([1, 2, 3], "holds a list"),
           ({b"data": np.array([[1, "x"]], dtype=object), b"labels": [0]}, "Python objects")]
    for obj, pattern in bad:
        dump(obj, folder / "test_batch", 2)
        with pytest.raises(DataError, match=pattern) as err:
            advframe.load_dataset("cifar10", data_dir=tmp_path)
        assert "\n" not in str(err.value)
    (folder / "test_batch").write_bytes(pickle.dumps(cifar_batch(np.zeros((1, 3072), np.uint8), [1]))[:-40])
    with pytest.raises(DataError, match="not a readable pickle"):
        advframe.load_dataset("cifar10", data_dir=tmp_path)


# ---------------------------------------------------------------- planted pickles


def test_payload_runs_under_a_plain_pickle_load(tmp_path):
    """The payloads are real: an unrestricted load would create the marker file."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(open, str(marker), "w"), protocol=2)).close()
    assert marker.exists()


@pytest.mark.parametrize("protocol", [2, None])
@pytest.mark.parametrize("which", [0, 1], ids=["os.system", "open"])
@pytest.mark.parametrize("where", ["whole_batch", "nested_labels"])
def test_planted_pickles_are_refused_before_they_run(tmp_path, protocol, which, where):
    make_cifar10_py(tmp_path)
    marker = tmp_path / "marker"
    payload = Payload(os.system, f"touch '{marker}'") if which == 0 else Payload(open, str(marker), "w")
    nested = cifar_batch(np.zeros((1, 3072), np.uint8), [0], extra={b"labels": payload})  # as the labels value
    obj = payload if where == "whole_batch" else nested
    target = tmp_path / "cifar-10-batches-py" / "test_batch"
    dump(obj, target, protocol)
    with pytest.raises(DataError) as err:
        advframe.load_dataset("cifar10", data_dir=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and str(target) in msg and "asks for" in msg
    assert ("posix.system" in msg or "nt.system" in msg) if which == 0 else ("io.open" in msg)
    assert not marker.exists()


class Calls:
    """Pickles as ``func(*args)`` with an allowed global: what a hostile batch can still ask for."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("case", ["ndarray called", "huge _reconstruct", "zero strides"])
def test_allowed_globals_cannot_allocate_more_than_the_file_holds(case):
    from numpy.lib.stride_tricks import as_strided

    if case == "ndarray called":  # ndarray(shape, dtype, buffer, offset, strides): 12 GB from 150 bytes
        payload = Calls(np.ndarray, (4_000_000, 3072), "u1", b"\0", 0, (0, 0))
    elif case == "huge _reconstruct":
        from numpy._core.multiarray import _reconstruct

        payload = Calls(_reconstruct, np.ndarray, (10 ** 12,), b"b")
    else:  # a real array whose state was written from a zero-stride view: numpy copies it, so it is big
        payload = as_strided(np.zeros(1, np.uint8), shape=(300, 3072), strides=(0, 0))
    data = pickle.dumps({b"data": payload, b"labels": [0]}, protocol=2)
    if case == "zero strides":
        assert len(data) > 300 * 3072  # numpy writes the whole array: this one is honest, and read
        assert loads_restricted(data, "x")[b"data"].shape == (300, 3072)
        return
    with pytest.raises(DataError) as info:
        loads_restricted(data, "batch")
    assert len(str(info.value).splitlines()) == 1 and "'batch'" in str(info.value)


def test_a_small_pickle_of_shared_containers_is_walked_once():
    """The memo lets 1 kB describe a DAG of 2**40 paths; the check visits each container once."""
    node: list = []
    for _ in range(40):
        node = [node, node]
    data = pickle.dumps({b"data": node}, protocol=2)
    assert len(data) < 2000
    out = loads_restricted(data, "dag")[b"data"]  # a walk over paths instead of objects would not return
    assert out[0] is out[1]


def test_codecs_encode_admitted_only_for_latin1(tmp_path):
    # protocol-2 pickles of bytes call _codecs.encode(text, "latin1"); nothing else is let through
    assert loads_restricted(pickle.dumps(b"\x00\xffab", protocol=2), "f") == b"\x00\xffab"
    crafted = pickle.dumps(b"x", protocol=2).replace(b"latin1", b"rot_13")
    with pytest.raises(DataError, match="not a readable pickle"):
        loads_restricted(crafted, "f")


def test_no_plain_pickle_load_in_the_readers():
    root = Path(cifar.__file__).parent
    for module in ("cifar.py", "datasets.py", "imagefolder.py", "restricted_pickle.py"):
        tree = ast.parse((root / module).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                assert (node.value.id, node.attr) not in {("pickle", "load"), ("pickle", "loads"),
                                                          ("torch", "load")}, module
            if isinstance(node, ast.keyword) and node.arg == "allow_pickle":
                assert isinstance(node.value, ast.Constant) and node.value.value is False, module


# ---------------------------------------------------------------- CIFAR-100


def test_cifar100_python_version_uses_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(5)
    arrays = {}
    for split, n in (("train", 6), ("test", 3)):
        images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        fine, coarse = rng.integers(0, 100, size=n), rng.integers(0, 20, size=n)
        dump(cifar_batch(images, fine, b"fine_labels", {b"coarse_labels": [int(c) for c in coarse]}),
             folder / split, "py2")
        arrays[split] = (images, fine)
    ds = cifar.CIFAR100()
    assert ds.name == "cifar100" and ds.num_classes == 100 and ds.input_shape == (3, 32, 32)
    assert ds.default_eps == pytest.approx((2 / 255, 4 / 255, 8 / 255, 16 / 255))
    for split, (images, fine) in arrays.items():
        data = ds.load(split, tmp_path)
        assert torch.equal(data.x, torch.from_numpy(images).float() / 255)
        assert data.y.tolist() == fine.tolist() and data.num_classes == 100
    dump(cifar_batch(arrays["test"][0], [1, 2, 100], b"fine_labels"), folder / "test", 2)
    with pytest.raises(DataError, match="label 100, outside 0..99"):
        ds.load("test", tmp_path)


def test_cifar100_binary_version(tmp_path):
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    rng = np.random.default_rng(6)
    images = rng.integers(0, 256, size=(3, 3, 32, 32), dtype=np.uint8)
    coarse, fine = np.array([[1], [19], [0]], np.uint8), np.array([[99], [0], [42]], np.uint8)
    for name in ("train.bin", "test.bin"):
        (folder / name).write_bytes(np.concatenate([coarse, fine, images.reshape(3, -1)], axis=1).tobytes())
    data = cifar.CIFAR100().load("test", tmp_path)
    assert data.y.tolist() == [99, 0, 42] and torch.equal(data.x, torch.from_numpy(images).float() / 255)
    (folder / "test.bin").write_bytes(bytes([20, 5]) + bytes(3072))
    with pytest.raises(DataError, match="coarse label 20"):
        cifar.CIFAR100().load("test", tmp_path)
    (folder / "test.bin").write_bytes(bytes(3073))
    with pytest.raises(DataError, match="3074-byte CIFAR-100 record"):
        cifar.CIFAR100().load("test", tmp_path)
    (tmp_path / "elsewhere").mkdir()  # neither version: the message names both
    with pytest.raises(DataError, match="cifar-100-binary.tar.gz.*cifar-100-python.tar.gz"):
        cifar.CIFAR100().load("test", tmp_path / "elsewhere")


# ---------------------------------------------------------------- image folders

def test_imagefolder_reads_png_exactly_and_jpeg_closely(tmp_path):
    pixels = make_tree(tmp_path)
    data = ImageFolder(image_size=8, resize=8).load("test", tmp_path)
    assert isinstance(data, ImageFolderData) and len(data) == 9 and data.num_classes == 3
    assert data.classes == ["cat", "dog", "eel"] and data.bounds == (0.0, 1.0)
    assert data.name == "imagefolder" and data.split == "test"
    assert data.default_eps == pytest.approx((2 / 255, 4 / 255, 8 / 255, 16 / 255))
    seen = set()
    for i in range(len(data)):
        x, y = data[i]
        rel = data.path(i).relative_to(tmp_path).as_posix()
        seen.add(rel)
        assert x.shape == (3, 8, 8) and x.dtype == torch.float32 and y == data.classes.index(rel.split("/")[0])
        if rel in pixels:
            assert torch.equal(x, torch.from_numpy(pixels[rel]).permute(2, 0, 1).float() / 255)
        else:
            want = torch.tensor(COLOURS[rel.split("/")[0]], dtype=torch.float32).view(3, 1, 1) / 255
            assert float((x - want).abs().max()) < 6 / 255
    assert len(seen) == 9 and not any(s.endswith(".txt") for s in seen)


def test_imagefolder_resize_and_centre_crop(tmp_path):
    (tmp_path / "a").mkdir()
    arr = np.random.default_rng(8).integers(0, 256, size=(12, 16, 3), dtype=np.uint8)  # 16 wide, 12 high
    Image.fromarray(arr).save(tmp_path / "a" / "wide.png")
    ds = ImageFolder(image_size=8)
    assert ds.effective_resize() == 9  # round(8 / 0.875)
    x, _ = ds.load("test", tmp_path)[0]
    # shorter side 12 -> 9, longer 16 -> int(9 * 16 / 12) = 12; centre crop 8: left 2, top round(0.5) = 0
    want = Image.fromarray(arr).resize((12, 9), Image.Resampling.BILINEAR).crop((2, 0, 10, 8))
    assert torch.equal(x, torch.from_numpy(np.asarray(want).copy()).permute(2, 0, 1).float() / 255)
    assert ImageFolder(image_size=224).effective_resize() == 256


def test_imagefolder_class_maps_set_the_order(tmp_path):
    make_tree(tmp_path)
    text = tmp_path / "LOC_synset_mapping.txt"
    text.write_text("eel eel, Anguilla\ncat tabby cat\n\ndog dog, Canis familiaris\n")
    js = tmp_path / "imagenet_class_index.json"
    js.write_text(json.dumps({"1": ["cat", "tabby"], "0": ["dog", "dog"], "2": ["eel", "eel"]}))
    for cmap, order in ((text, ["eel", "cat", "dog"]), (js, ["dog", "cat", "eel"])):
        data = ImageFolder(image_size=8, resize=8, class_map=str(cmap)).load("val", tmp_path)
        assert data.classes == order
        for i in range(len(data)):
            assert int(data.labels[i]) == order.index(data.files[i].split("/")[0])
        described = json.loads(json.dumps(data.describe()))
        assert described == {"root": str(tmp_path), "class_map": str(cmap), "classes": order,
                             "image_size": 8, "resize": 8}
    text.write_text("ant\ncat\ndog\neel\nfox\n")  # a map of more classes than the folders: labels keep its order
    part = ImageFolder(image_size=8, resize=8, class_map=str(text)).load("test", tmp_path)
    assert part.num_classes == 5 and sorted(set(part.labels.tolist())) == [1, 2, 3]
    text.write_text("ant\nbee\n")
    with pytest.raises(DataError, match="no class of the class map .* has a folder"):
        ImageFolder(image_size=8, class_map=str(text)).load("test", tmp_path)
    text.write_text("cat\ndog\n")
    with pytest.raises(DataError, match="folder 'eel' .* is not in the class map"):
        ImageFolder(image_size=8, class_map=str(text)).load("test", tmp_path)
    js.write_text(json.dumps({"0": ["cat"], "2": ["dog"]}))
    with pytest.raises(DataError, match="not 0..1"):
        ImageFolder(image_size=8, class_map=str(js)).load("test", tmp_path)


def test_imagefolder_every_prefix_is_class_balanced_and_order_is_fixed(tmp_path):
    make_tree(tmp_path, counts=(5, 4, 3))
    data = ImageFolder(image_size=8).load("test", tmp_path)
    labels = data.labels.tolist()
    for k in (1, 2, 3):
        assert sorted(labels[:3 * k]) == [0] * k + [1] * k + [2] * k
    assert sorted(labels) == [0] * 5 + [1] * 4 + [2] * 3
    assert ImageFolder(image_size=8).load("test", tmp_path).files == data.files  # a fixed order
    assert data.take(3).labels.tolist() == labels[:3] and len(data.take(3)) == 3


def test_imagefolder_streams_decoding_only_what_is_asked(tmp_path, monkeypatch):
    make_tree(tmp_path)
    opened, real_open = [], Image.open

    def counting_open(fp, *args, **kwargs):
        opened.append(Path(fp))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    data = ImageFolder(image_size=8).load("test", tmp_path)
    assert opened == []
    data[4]
    assert opened == [data.path(4)]
    x, y = as_source(data).take(3).batch(0, 3)
    assert x.shape == (3, 3, 8, 8) and sorted(y.tolist()) == [0, 1, 2] and len(opened) == 4


def test_imagefolder_split_folders(tmp_path):
    make_tree(tmp_path / "val")
    assert ImageFolder(image_size=8).load("test", tmp_path).root == tmp_path / "val"
    assert ImageFolder(image_size=8).load("val", tmp_path).root == tmp_path / "val"
    with pytest.raises(DataError, match="split folders \\(val\\) but none for split 'train'"):
        ImageFolder(image_size=8).load("train", tmp_path)


def test_imagefolder_errors_are_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "stray.png").write_bytes(b"")
    tree = tmp_path / "tree"
    make_tree(tree)
    (tree / "cat" / "img0.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    data = ImageFolder(image_size=8).load("test", tree)  # listing only: the bad file is not opened yet
    (tree / "fox").mkdir()
    load = ImageFolder(image_size=8).load
    cases = [(lambda: load("test", tmp_path / "empty"), "no class folders"),
             (lambda: load("test", tree), "fox' holds no JPEG or PNG"),
             (lambda: load("test", tmp_path / "nope"), "does not exist"),
             (lambda: load("test", None), "--data-dir"),
             (lambda: load("holdout", tree), "no split 'holdout'"),
             (lambda: data[data.files.index("cat/img0.png")], "cannot decode image '.*cat/img0.png'")]
    for call, pattern in cases:
        with pytest.raises(DataError, match=pattern) as err:
            call()
        assert "\n" not in str(err.value)
    with pytest.raises(DataError) as err:
        ImageFolder().load("test", tree)
    assert "image_size=N" in str(err.value) and "declares its input size" in str(err.value)
    assert "pass --image-size N, or a model" in err.value.render(cli=True)
    with pytest.raises(advframe.AdvframeError, match="resize"):
        ImageFolder(image_size=8, resize=4)
    assert ImageFolder(image_size="32", resize="40").image_size == 32  # CLI strings
