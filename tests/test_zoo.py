"""advframe_zoo: mnist5k split, IDX / CIFAR-10 binary readers, model shapes, the shipped model."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

import advframe
from advframe.errors import DataError

zoo_datasets = pytest.importorskip("advframe_zoo.datasets")


# ---------------------------------------------------------------- mnist5k


def test_mnist5k_split_is_stratified_disjoint_and_deterministic():
    train = advframe.load_dataset("mnist5k", split="train")
    test = advframe.load_dataset("mnist5k", split="test")
    assert train.x.shape == (4000, 1, 28, 28) and test.x.shape == (1000, 1, 28, 28)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.long
    assert torch.equal(train.y.bincount(minlength=10), torch.full((10,), 400))
    assert torch.equal(test.y.bincount(minlength=10), torch.full((10,), 100))
    assert float(train.x.min()) >= 0.0 and float(train.x.max()) <= 1.0 and float(train.x.max()) > 0.99
    # disjoint and together the whole file
    import io
    from importlib import resources
    raw = resources.files("advframe_zoo").joinpath("data/mnist5k.npz").read_bytes()
    with np.load(io.BytesIO(raw)) as npz:
        labels = npz["labels"]
        images = npz["images"]
    tr = zoo_datasets.mnist5k_split_indices(labels, "train")
    te = zoo_datasets.mnist5k_split_indices(labels, "test")
    assert len(set(tr) & set(te)) == 0 and len(set(tr) | set(te)) == 5000
    order = zoo_datasets.mnist5k_order(labels, "test")
    assert sorted(order.tolist()) == te.tolist()
    assert torch.equal(test.x[:, 0], torch.from_numpy(images[order]).float() / 255)
    # the same call gives the same split (fixed seed, not the global RNG)
    torch.manual_seed(123)
    np.random.seed(123)
    again = advframe.load_dataset("mnist5k", split="test")
    assert torch.equal(again.x, test.x) and torch.equal(again.y, test.y)
    # pinned: the rule must never change silently (it would change every reported number)
    assert te[:5].tolist() == [7, 10, 15, 17, 19]


@pytest.mark.parametrize("split,per_class", [("test", 100), ("train", 400)])
def test_mnist5k_every_prefix_is_class_balanced(split, per_class):
    data = advframe.load_dataset("mnist5k", split=split)
    for k in range(1, per_class + 1):
        assert torch.equal(data.y[:10 * k].bincount(minlength=10), torch.full((10,), k)), k
    # no class leads another by more than one in any prefix
    counts = torch.zeros(10, dtype=torch.long)
    for label in data.y[:200].tolist():
        counts[label] += 1
        assert int(counts.max() - counts.min()) <= 1
    # --limit 100 (a prefix) is no longer only zeros
    assert set(data.take(100).y.tolist()) == set(range(10))
    assert set(data.take(10).y.tolist()) == set(range(10))


def test_mnist5k_order_is_deterministic_and_pinned():
    torch.manual_seed(7)
    np.random.seed(7)
    a = advframe.load_dataset("mnist5k", split="test")
    b = advframe.load_dataset("mnist5k", split="test")
    assert torch.equal(a.y, b.y) and torch.equal(a.x, b.x)
    # pinned: changing the order changes every number measured on a prefix
    assert a.y[:20].tolist() == [6, 9, 3, 2, 7, 4, 0, 8, 1, 5, 2, 1, 7, 0, 3, 6, 4, 8, 9, 5]


def test_balanced_order_with_unequal_classes():
    labels = np.array([0] * 5 + [1] * 2 + [2] * 3)
    order = zoo_datasets.balanced_order(labels, 0)
    assert sorted(order.tolist()) == list(range(10))
    assert sorted(labels[order[:3]].tolist()) == [0, 1, 2] and sorted(labels[order[3:6]].tolist()) == [0, 1, 2]


def test_mnist5k_metadata():
    ds = advframe.get_dataset("mnist5k")
    assert ds.default_eps == (0.05, 0.1, 0.2, 0.3)
    assert ds.bounds == (0.0, 1.0) and ds.needs_data_dir is False and ds.input_shape == (1, 28, 28)
    with pytest.raises(DataError, match="no split"):
        ds.load("validation")


# ---------------------------------------------------------------- IDX files


def write_idx(path, array: np.ndarray, compress: bool = False) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def make_mnist_dir(root, n_train=6, n_test=4, compress=False):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n, (img, lab) in (("train", n_train, zoo_datasets.IDX_FILES["train"]),
                                 ("test", n_test, zoo_datasets.IDX_FILES["test"])):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(root / img, images, compress)
        write_idx(root / lab, labels, compress)
        arrays[split] = (images, labels)
    return arrays


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_idx_reader_round_trip(tmp_path, compress, name):
    arrays = make_mnist_dir(tmp_path, compress=compress)
    for split in ("train", "test"):
        data = advframe.load_dataset(name, split=split, data_dir=tmp_path)
        images, labels = arrays[split]
        assert data.x.shape == (len(labels), 1, 28, 28) and data.x.dtype == torch.float32
        assert torch.equal(data.x[:, 0], torch.from_numpy(images).float() / 255)
        assert torch.equal(data.y, torch.from_numpy(labels.astype(np.int64)))
    assert advframe.get_dataset(name).default_eps == (0.05, 0.1, 0.2, 0.3)


def test_idx_missing_file_names_it(tmp_path):
    make_mnist_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*download"):
        advframe.load_dataset("mnist", split="test", data_dir=tmp_path)
    with pytest.raises(DataError, match="--data-dir"):
        advframe.load_dataset("mnist", split="test")


def test_idx_truncated_and_bad_magic(tmp_path):
    make_mnist_dir(tmp_path)
    p = tmp_path / "t10k-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated"):
        advframe.load_dataset("mnist", split="test", data_dir=tmp_path)
    p.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(DataError, match="not an IDX file"):
        advframe.load_dataset("mnist", split="test", data_dir=tmp_path)


def test_idx_image_label_count_mismatch(tmp_path):
    make_mnist_dir(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(3, dtype=np.uint8))
    with pytest.raises(DataError, match="4 images but 3 labels"):
        advframe.load_dataset("mnist", split="test", data_dir=tmp_path)


# ---------------------------------------------------------------- CIFAR-10 binary


def write_cifar(path, images: np.ndarray, labels: np.ndarray) -> None:
    rec = np.concatenate([labels.reshape(-1, 1), images.reshape(len(labels), -1)], axis=1).astype(np.uint8)
    path.write_bytes(rec.tobytes())


def make_cifar_dir(root):
    rng = np.random.default_rng(1)
    out = {}
    for split, files in pytest.importorskip("advframe_zoo.cifar").CIFAR_FILES.items():
        ims, labs = [], []
        for f in files:
            images = rng.integers(0, 256, size=(3, 3, 32, 32), dtype=np.uint8)
            labels = rng.integers(0, 10, size=3, dtype=np.uint8)
            write_cifar(root / f, images, labels)
            ims.append(images)
            labs.append(labels)
        out[split] = (np.concatenate(ims), np.concatenate(labs))
    return out


def test_cifar_binary_reader(tmp_path):
    arrays = make_cifar_dir(tmp_path)
    for split in ("train", "test"):
        data = advframe.load_dataset("cifar10", split=split, data_dir=tmp_path)
        images, labels = arrays[split]
        assert data.x.shape == (len(labels), 3, 32, 32)
        assert torch.equal(data.x, torch.from_numpy(images).float() / 255)
        assert torch.equal(data.y, torch.from_numpy(labels.astype(np.int64)))
    assert len(advframe.load_dataset("cifar10", split="train", data_dir=tmp_path)) == 15
    ds = advframe.get_dataset("cifar10")
    assert ds.default_eps == pytest.approx((2 / 255, 4 / 255, 8 / 255, 16 / 255))
    assert ds.needs_data_dir


def test_cifar_channel_layout(tmp_path):
    # one record: red plane all 10, green 20, blue 30, label 7
    make_cifar_dir(tmp_path)
    rec = bytes([7]) + bytes([10]) * 1024 + bytes([20]) * 1024 + bytes([30]) * 1024
    (tmp_path / "test_batch.bin").write_bytes(rec)
    data = advframe.load_dataset("cifar10", split="test", data_dir=tmp_path)
    assert data.y.tolist() == [7]
    assert data.x[0, :, 5, 9].mul(255).round().tolist() == [10, 20, 30]


def test_cifar_missing_and_bad_files(tmp_path):
    make_cifar_dir(tmp_path)
    (tmp_path / "data_batch_3.bin").unlink()
    with pytest.raises(DataError, match="data_batch_3.bin.*binary version"):
        advframe.load_dataset("cifar10", split="train", data_dir=tmp_path)
    (tmp_path / "test_batch.bin").write_bytes(b"x" * 100)
    with pytest.raises(DataError, match="3073"):
        advframe.load_dataset("cifar10", split="test", data_dir=tmp_path)


def test_cifar_reads_extracted_subfolder(tmp_path):
    sub = tmp_path / "cifar-10-batches-bin"
    sub.mkdir()
    make_cifar_dir(sub)
    assert len(advframe.load_dataset("cifar10", split="test", data_dir=tmp_path)) == 3


# ---------------------------------------------------------------- models


@pytest.mark.parametrize("name,shape", [("mnist_cnn", (1, 28, 28)), ("cifar_cnn", (3, 32, 32))])
@pytest.mark.parametrize("width", [0.5, 1.0, 2.0])
def test_model_shapes_and_width(name, shape, width):
    m = advframe.build_model(name, width=width)
    out = m(torch.rand(5, *shape))
    assert out.shape == (5, 10)
    assert m.predict(out).shape == (5,) and m.loss(out, torch.zeros(5, dtype=torch.long)).shape == (5,)
    conv1 = m.features[0]
    assert conv1.out_channels == max(1, round(8 * width)) and conv1.in_channels == shape[0]


def test_model_keeps_channels_and_classes_and_normalises_inside():
    m = advframe.build_model("mnist_cnn", in_channels=2, num_classes=3, mean=[0.5, 0.5], std=[0.25, 0.25])
    assert m(torch.rand(4, 2, 28, 28)).shape == (4, 3)
    assert "mean" in m.state_dict()
    plain = advframe.build_model("mnist_cnn")
    assert "mean" not in plain.state_dict()
    with pytest.raises(advframe.AdvframeError, match="width"):
        advframe.build_model("mnist_cnn", width=0)


def test_mnist_cnn_is_cheap_enough_for_iterative_attacks():
    # ~180 forward+backward passes over 1,000 digits (iter_ll over 4 eps) must fit well
    # under a minute on 2 CPU cores: budget the multiply-adds per example (not a flaky timer)
    m = advframe.build_model("mnist_cnn").eval()
    macs, x = 0, torch.rand(1, 1, 28, 28)
    for layer in list(m.features) + list(m.classifier):
        y = layer(x)
        if isinstance(layer, torch.nn.Conv2d):
            macs += y[0].numel() * layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, torch.nn.Linear):
            macs += layer.weight.numel()
        x = y
    assert macs < 600_000
    assert sum(p.numel() for p in m.parameters()) < 100_000


# ---------------------------------------------------------------- the shipped model


def test_shipped_model_accuracy_on_mnist5k_test():
    model = advframe.load_model("mnist_cnn_standard")
    data = advframe.load_dataset("mnist5k", split="test")
    with torch.no_grad():
        acc = (model.predict(model(data.x)) == data.y).float().mean().item()
    assert acc >= 0.95
    entry = advframe.plugins.registry().get("models", "mnist_cnn_standard")
    assert "shipped" in entry.summary


def test_iter_ll_breaks_the_shipped_model_at_eps_0_3():
    """Kurakin et al. 2017: iter. l.l. misclassifies more than 99 % of the examples (issue 2's bar:
    top-1 at most 1 % at eps 0.3); checked on the first 300 test digits, default schedule (80 steps)."""
    model = advframe.load_model("mnist_cnn_standard")
    data = advframe.load_dataset("mnist5k", split="test").take(300)
    result = advframe.evaluate(model, data, attacks=["iter_ll"], eps=[0.3], batch_size=300)
    assert result.clean_top1 >= 0.95
    assert result.run("iter_ll", 0.3).top1 <= 0.01


def test_shipped_robust_model_names_its_defense_recipe_and_history_and_resists_pgd():
    from importlib import resources

    from advframe.checkpoint import read_metadata

    entry = advframe.plugins.registry().get("models", "mnist_cnn_robust")
    assert "shipped" in entry.summary and "pgd_at" in entry.summary
    with resources.as_file(resources.files("advframe_zoo").joinpath("weights/mnist_cnn_robust.safetensors")) as path:
        meta = read_metadata(path)
    assert meta["defense"] == "pgd_at" and meta["dataset"] == "mnist5k"
    assert meta["recipe"]["keep"] == "best" and meta["recipe"]["holdout"] == 200
    assert meta["kept_epoch"] == max(meta["history"], key=lambda e: e["holdout_robust"])["epoch"]
    assert all({"holdout_clean", "holdout_robust", "loss"} <= set(e) for e in meta["history"])
    model = advframe.load_model("mnist_cnn_robust")
    data = advframe.load_dataset("mnist5k", split="test")
    with torch.no_grad():
        assert (model.predict(model(data.x)) == data.y).float().mean().item() >= 0.975  # measured: 99.0 %
    # PGD-10 at eps 0.3 on 100 digits: a standard model keeps none of them
    small = data.take(100)
    result = advframe.evaluate(model, small, attacks=["pgd"], eps=[0.3], params={"steps": 10, "seed": 0},
                               batch_size=100)
    assert result.run("pgd", 0.3).top1 >= 0.7
