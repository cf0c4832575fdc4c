"""Your own data without a reader plugin: x and y arrays in an .npz or .safetensors file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

import advframe
from advframe.errors import DataError
from tests.helpers import run_cli


def digits(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    d = advframe.load_dataset("mnist5k", split="test")
    step = len(d) // n
    return np.ascontiguousarray(d.x[::step][:n].numpy()), np.ascontiguousarray(d.y[::step][:n].numpy())


def test_npz_and_safetensors_read_the_same(tmp_path):
    x, y = digits()
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    save_file({"x": x, "y": y, "bounds": np.array([0.0, 1.0], dtype=np.float32)}, str(tmp_path / "mine.safetensors"))
    a = advframe.load_dataset(str(tmp_path / "mine.npz"))
    b = advframe.load_dataset(str(tmp_path / "mine.safetensors"))
    assert a.name == "mine" and len(a) == 40 and a.num_classes == 10 and a.bounds == (0.0, 1.0)
    assert (a.x == b.x).all() and (a.y == b.y).all()
    assert a.default_eps == pytest.approx((2 / 255, 4 / 255, 8 / 255, 16 / 255))


def test_per_split_arrays_and_bounds(tmp_path):
    x, y = digits()
    np.savez(tmp_path / "s.npz", x_train=x[:30] * 2 - 1, y_train=y[:30], x_test=x[30:] * 2 - 1, y_test=y[30:],
             bounds=np.array([-1.0, 1.0]))
    train = advframe.load_dataset(str(tmp_path / "s.npz"), split="train")
    assert len(train) == 30 and train.bounds == (-1.0, 1.0) and train.default_eps[0] == pytest.approx(4 / 255)
    assert len(advframe.load_dataset(str(tmp_path / "s.npz"), split="test")) == 10


X, Y = np.full((4, 1, 8, 8), 0.5, dtype=np.float32), np.array([0, 1, 2, 1])
BAD = {
    "nan": (dict(x=np.where(np.arange(256).reshape(4, 1, 8, 8) == 70, np.nan, X).astype(np.float32), y=Y),
            "example 1 holds NaN"),
    "out of bounds": (dict(x=X * 255, y=Y), "outside the bounds"),
    "3-d x": (dict(x=X[:, 0], y=Y), "add a channel axis"),
    "float labels": (dict(x=X, y=Y.astype(np.float32)), "store class indices as integers"),
    "2-d labels": (dict(x=X, y=Y[:, None]), "expected (N,)"),
    "count": (dict(x=X, y=Y[:3]), "4 inputs but 3 labels"),
    "no y": (dict(x=X), "needs x and y"),
    "bad bounds": (dict(x=X, y=Y, bounds=np.array([1.0, 0.0])), "lo < hi"),
    "negative label": (dict(x=X, y=Y - 1), "negative"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_arrays_are_refused_with_one_line(tmp_path, case):
    arrays, needle = BAD[case]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        advframe.load_dataset(str(tmp_path / "bad.npz"))


def test_object_arrays_are_never_unpickled(tmp_path):
    np.savez(tmp_path / "obj.npz", x=np.array([object()], dtype=object), y=Y)
    with pytest.raises(DataError, match="no pickle"):
        advframe.load_dataset(str(tmp_path / "obj.npz"))


def test_eval_on_an_array_file(tmp_path):
    x, y = digits(30)
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    out = tmp_path / "r.json"
    proc = run_cli("eval", "--dataset", str(tmp_path / "mine.npz"), "--attack", "fgsm", "--eps", "0.1",
                   "--no-checks", "--no-progress", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["dataset"] == "mine" and doc["examples"] == 30
