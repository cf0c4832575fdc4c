"""Nothing gets past the evaluator: every bad input is one line on stderr, exit code 2, no traceback.

Each row of ``ROWS`` is one bad input: the command line, an optional ``setup`` that
writes the files it needs into a fresh folder, and the texts the error line must
contain (the bad value). Every row runs in-process through Typer's ``CliRunner``
isolation and :func:`advframe.cli.main` (the same error handling as the console
script); ``SUBPROCESS`` names the rows that also run through the real ``advframe``
console script.

To add a row: append ``Row("id", [...argv...], ["needle", ...], setup=...)`` to
``ROWS`` (or to a list concatenated into it). In ``argv`` and ``needles``, ``{tmp}``
is the row's own folder; ``setup(tmp, res)`` receives that folder and the shared
resources of this module (``res.checkpoint()``: a resumable training checkpoint).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import invoke, run_cli

# ---------------------------------------------------------------- files the rows need


def write_idx(path: Path, array: np.ndarray, ndim: int | None = None) -> None:
    ndim = array.ndim if ndim is None else ndim
    header = struct.pack(">BBBB", 0, 0, 0x08, ndim) + b"".join(struct.pack(">I", d) for d in array.shape[:ndim])
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def mnist_dir(tmp: Path, n: int = 4) -> Path:
    """An IDX folder with ``n`` random test and train digits; returns it."""
    d = tmp / "mnist"
    d.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for img, lab in (("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                     ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")):
        write_idx(d / img, rng.integers(0, 256, size=(n, 28, 28)))
        write_idx(d / lab, rng.integers(0, 10, size=n))
    return d


def gz_of(path: Path) -> Path:
    """Replace ``path`` by ``path.gz`` (valid gzip); return the new path."""
    gz = path.with_name(path.name + ".gz")
    gz.write_bytes(gzip.compress(path.read_bytes(), mtime=0))  # no file name: the deflate data starts at byte 10
    path.unlink()
    return gz


def corrupt_gzip(tmp: Path, res: "Resources") -> None:
    gz = gz_of(mnist_dir(tmp) / "t10k-images-idx3-ubyte")
    raw = bytearray(gz.read_bytes())
    raw[10:30] = b"\xff" * 20  # the deflate stream, past the 10-byte gzip header
    gz.write_bytes(bytes(raw))


def truncated_gzip(tmp: Path, res: "Resources") -> None:
    gz = gz_of(mnist_dir(tmp) / "t10k-images-idx3-ubyte")
    gz.write_bytes(gz.read_bytes()[:40])


def not_gzip(tmp: Path, res: "Resources") -> None:
    gz = gz_of(mnist_dir(tmp) / "t10k-images-idx3-ubyte")
    gz.write_bytes(b"this is not gzip at all")


def zero_dim_idx(tmp: Path, res: "Resources") -> None:
    (mnist_dir(tmp) / "t10k-images-idx3-ubyte").write_bytes(struct.pack(">BBBB", 0, 0, 0x08, 0))  # header only


def zero_examples(tmp: Path, res: "Resources") -> None:
    d = mnist_dir(tmp)
    write_idx(d / "t10k-images-idx3-ubyte", np.zeros((0, 28, 28)))
    write_idx(d / "t10k-labels-idx1-ubyte", np.zeros((0,)))


def zero_train_examples(tmp: Path, res: "Resources") -> None:
    d = mnist_dir(tmp)
    write_idx(d / "train-images-idx3-ubyte", np.zeros((0, 28, 28)))
    write_idx(d / "train-labels-idx1-ubyte", np.zeros((0,)))


def bad_magic(tmp: Path, res: "Resources") -> None:
    (mnist_dir(tmp) / "t10k-images-idx3-ubyte").write_bytes(b"\x12\x34\x08\x03garbage")


def truncated_idx(tmp: Path, res: "Resources") -> None:
    p = mnist_dir(tmp) / "t10k-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-7])


def count_mismatch(tmp: Path, res: "Resources") -> None:
    write_idx(mnist_dir(tmp) / "t10k-labels-idx1-ubyte", np.zeros(3))


def label_out_of_range(tmp: Path, res: "Resources") -> None:
    write_idx(mnist_dir(tmp) / "t10k-labels-idx1-ubyte", np.array([1, 2, 12, 3]))


def images_2d(tmp: Path, res: "Resources") -> None:
    write_idx(mnist_dir(tmp) / "t10k-images-idx3-ubyte", np.zeros((4, 784)))


def cifar_dir(tmp: Path, res: "Resources", labels: list[int] | None = None, empty: bool = False) -> None:
    d = tmp / "cifar"
    d.mkdir()
    rng = np.random.default_rng(1)
    labs = np.array(labels if labels is not None else [0, 1, 2, 3], dtype=np.uint8)
    for name in ["test_batch.bin"] + [f"data_batch_{i}.bin" for i in range(1, 6)]:
        rec = np.concatenate([labs.reshape(-1, 1), rng.integers(0, 256, size=(len(labs), 3072))], axis=1)
        (d / name).write_bytes(b"" if empty else rec.astype(np.uint8).tobytes())


def a_file(name: str, text: str = "x") -> Callable[[Path, "Resources"], None]:
    def setup(tmp: Path, res: "Resources") -> None:
        (tmp / name).write_text(text)
    return setup


def a_folder(name: str) -> Callable[[Path, "Resources"], None]:
    def setup(tmp: Path, res: "Resources") -> None:
        (tmp / name).mkdir()
    return setup


def a_fifo(name: str) -> Callable[[Path, "Resources"], None]:
    def setup(tmp: Path, res: "Resources") -> None:
        os.mkfifo(tmp / name)
    return setup


EVAL_DOC = {"schema": "advframe.eval/1", "model": "m", "dataset": "mnist5k", "split": "test", "examples": 10,
            "clean": {"top1": 0.9, "top5": 1.0},
            "runs": [{"attack": "fgsm", "eps": 0.1, "norm": "linf", "targeted": False, "params": {}, "top1": 0.5,
                      "top5": 0.9, "success_rate": 0.4, "accuracy_ratio": 0.55, "label_leaks": None,
                      "max_perturbation": 0.1, "violations": 0, "gradient_evaluations": 1.0, "seconds": 0.1}],
            "checks": []}

TRANSFER_DOC = {"schema": "advframe.transfer/1", "dataset": "mnist5k", "split": "test", "examples": 10,
                "norm": "linf", "sources": ["a"], "targets": ["a"], "clean": {"a": {"top1": 0.9, "top5": 1.0}},
                "runs": [{"source": "a", "target": "a", "attack": "fgsm", "eps": 0.1,
                          "accuracy": {"top1": 0.5, "top5": 0.9}}],
                "matrices": [{"attack": "fgsm", "eps": 0.1,
                              "transfer_rate": {"top1": [[0.4]], "top5": [[0.1]]},
                              "error_rate": {"top1": [[0.5]], "top5": [[0.1]]}}],
                "definitions": {"transfer_rate": "t", "error_rate": "e"}}


def doc_file(name: str, edit: Callable[[dict], object], base: dict = EVAL_DOC) -> Callable[[Path, "Resources"], None]:
    """A results document ``name`` = ``base`` changed by ``edit`` (which may return a replacement)."""
    def setup(tmp: Path, res: "Resources") -> None:
        doc = json.loads(json.dumps(base))
        replaced = edit(doc)
        (tmp / name).write_text(json.dumps(doc if replaced is None else replaced))
    return setup


def good_eval_doc(tmp: Path, res: "Resources") -> None:
    (tmp / "r.json").write_text(json.dumps(EVAL_DOC))


def with_fifo_and_doc(name: str) -> Callable[[Path, "Resources"], None]:
    def setup(tmp: Path, res: "Resources") -> None:
        good_eval_doc(tmp, res)
        os.mkfifo(tmp / name)
    return setup


def checkpoint_copy(tmp: Path, res: "Resources") -> None:
    shutil.copy(res.checkpoint(), tmp / "ck.safetensors")


def npz(name: str = "d.npz", **edits: object) -> Callable[[Path, "Resources"], None]:
    """An array data set ``name`` (six random digits in [0, 1], labels 0..5) with ``edits`` applied;
    an edit of None removes the array."""
    def setup(tmp: Path, res: "Resources") -> None:
        rng = np.random.default_rng(0)
        arrays: dict[str, object] = {"x": rng.random((6, 1, 28, 28)).astype(np.float32), "y": np.arange(6)}
        for key, value in edits.items():
            if value is None:
                arrays.pop(key)
            else:
                arrays[key] = value(arrays[key]) if callable(value) else value
        np.savez(tmp / name, **arrays)
    return setup


def with_nan(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x[2, 0, 3, 3] = np.nan
    return x


def deeply_nested(tmp: Path, res: "Resources") -> None:
    (tmp / "r.json").write_text("[" * 100_000 + "]" * 100_000)


class Resources:
    """What several rows share, made once per module."""

    def __init__(self, root: Path):
        self.root = root
        self._ck: Path | None = None

    def checkpoint(self) -> Path:
        """A checkpoint of 'advframe train' with its defaults (mnist_cnn, standard, sgd), stopped after 1 step."""
        if self._ck is None:
            import advframe

            path = self.root / "ck.safetensors"
            advframe.train("mnist_cnn", "mnist5k", epochs=5, batch_size=64, optimizer="sgd", lr=0.05,
                           momentum=0.9, weight_decay=0.0, schedule="none", seed=0, out=path, max_steps=1)
            self._ck = path
        return self._ck


# ---------------------------------------------------------------- the table


@dataclass
class Row:
    id: str
    argv: list[str]
    needles: list[str]
    setup: Callable[[Path, Resources], None] | None = None
    marks: list = field(default_factory=list)


MN = ["--dataset", "mnist", "--data-dir", "{tmp}/mnist"]
EVAL = ["eval", "--no-progress", "--no-checks"]
TRAIN = ["train", "--no-progress", "--out", "{tmp}/ck.safetensors"]
RESUME = TRAIN + ["--resume"]
TRANSFER = ["transfer", "--no-progress", "--source", "mnist_cnn_standard", "--target-model", "mnist_cnn_standard"]

DATA_ROWS = [
    Row("gzip-corrupt-stream", EVAL + MN, ["t10k-images-idx3-ubyte.gz"], corrupt_gzip),
    Row("gzip-truncated", EVAL + MN, ["t10k-images-idx3-ubyte.gz"], truncated_gzip),
    Row("gzip-not-gzip", EVAL + MN, ["t10k-images-idx3-ubyte.gz"], not_gzip),
    Row("idx-0-dimensional", EVAL + MN, ["t10k-images-idx3-ubyte", "0-dimensional"], zero_dim_idx),
    Row("idx-zero-examples-eval", EVAL + MN, ["no examples"], zero_examples),
    Row("idx-zero-examples-train", TRAIN + MN, ["no examples"], zero_train_examples),
    Row("idx-bad-magic", EVAL + MN, ["t10k-images-idx3-ubyte", "magic"], bad_magic),
    Row("idx-truncated", EVAL + MN, ["t10k-images-idx3-ubyte", "truncated"], truncated_idx),
    Row("idx-count-mismatch", EVAL + MN, ["4 images but 3 labels"], count_mismatch),
    Row("idx-label-12", EVAL + MN, ["label 12"], label_out_of_range),
    Row("idx-images-2d", EVAL + MN, ["2-d"], images_2d),
    Row("data-dir-missing", EVAL + ["--dataset", "mnist", "--data-dir", "{tmp}/nowhere"], ["{tmp}/nowhere"]),
    Row("data-dir-is-file", EVAL + ["--dataset", "mnist", "--data-dir", "{tmp}/f"], ["{tmp}/f"], a_file("f")),
    Row("data-dir-needed", EVAL + ["--dataset", "mnist"], ["--data-dir"]),
    Row("shape-eval", EVAL + ["--dataset", "cifar10", "--data-dir", "{tmp}/cifar"], ["3x32x32", "mnist_cnn_standard"],
        cifar_dir),
    Row("shape-train", TRAIN + ["--model", "cifar_cnn"], ["1x28x28", "3x32x32"]),
    Row("shape-transfer", ["transfer", "--no-progress", "--untrained", "--source", "cifar_cnn", "--target-model", "cifar_cnn"],
        ["1x28x28", "3x32x32"]),
    Row("cifar-empty-file", EVAL + ["--dataset", "cifar10", "--data-dir", "{tmp}/cifar"], ["0 bytes"],
        lambda tmp, res: cifar_dir(tmp, res, empty=True)),
    Row("cifar-label-12", EVAL + ["--dataset", "cifar10", "--data-dir", "{tmp}/cifar"], ["label 12"],
        lambda tmp, res: cifar_dir(tmp, res, labels=[1, 12, 3])),
    Row("split-unknown", EVAL + ["--split", "validation"], ["validation"]),
    Row("dataset-unknown", EVAL + ["--dataset", "mnist6k"], ["mnist6k"]),
]

OUTPUT_ROWS = [
    Row("eval-output-folder", EVAL + ["--output", "{tmp}/d"], ["--output", "{tmp}/d", "folder"], a_folder("d")),
    Row("eval-output-no-parent", EVAL + ["--output", "{tmp}/no/r.json"], ["--output", "{tmp}/no"]),
    Row("eval-output-fifo", EVAL + ["--output", "{tmp}/p"], ["--output", "{tmp}/p", "regular file"], a_fifo("p")),
    Row("eval-output-parent-is-file", EVAL + ["--output", "{tmp}/f/r.json"], ["{tmp}/f"], a_file("f")),
    Row("transfer-output-folder", TRANSFER + ["--output", "{tmp}/d"], ["--output", "{tmp}/d"], a_folder("d")),
    Row("transfer-markdown-no-parent", TRANSFER + ["--markdown", "{tmp}/no/t.md"], ["--markdown", "{tmp}/no"]),
    Row("transfer-output-fifo", TRANSFER + ["--output", "{tmp}/p"], ["--output", "{tmp}/p"], a_fifo("p")),
    Row("transfer-same-file-twice", TRANSFER + ["--output", "{tmp}/x", "--markdown", "{tmp}/x"],
        ["--markdown", "--output", "{tmp}/x"]),
    Row("report-markdown-folder", ["report", "{tmp}/r.json", "--markdown", "{tmp}/d"], ["--markdown", "{tmp}/d"],
        lambda tmp, res: (good_eval_doc(tmp, res), (tmp / "d").mkdir())),
    Row("report-plot-no-parent", ["report", "{tmp}/r.json", "--plot", "{tmp}/no/p.png"], ["--plot", "{tmp}/no"],
        good_eval_doc),
    Row("report-markdown-fifo", ["report", "{tmp}/r.json", "--markdown", "{tmp}/p"], ["--markdown", "{tmp}/p"],
        with_fifo_and_doc("p")),
    Row("train-out-folder", ["train", "--no-progress", "--out", "{tmp}/d"], ["--out", "{tmp}/d"], a_folder("d")),
    Row("train-out-no-parent", ["train", "--no-progress", "--out", "{tmp}/no/m.safetensors"], ["--out", "{tmp}/no"]),
    Row("train-out-fifo", ["train", "--no-progress", "--out", "{tmp}/p"], ["--out", "{tmp}/p"], a_fifo("p")),
]

PARTIAL_ROWS = [
    Row("partial-not-json", EVAL + ["--limit", "10", "--output", "{tmp}/r.json", "--resume"],
        ["{tmp}/r.json.partial", "damaged"], a_file("r.json.partial", "{not json")),
    Row("partial-wrong-shape", EVAL + ["--limit", "10", "--output", "{tmp}/r.json", "--resume"],
        ["{tmp}/r.json.partial", "damaged"], a_file("r.json.partial", "[1, 2]")),
    Row("resume-without-output", EVAL + ["--resume"], ["--resume", "--output"]),
]

TRAIN_ROWS = [
    Row("momentum-negative", TRAIN + ["--momentum", "-0.5"], ["momentum", "-0.5"]),
    Row("momentum-nan", TRAIN + ["--momentum", "nan"], ["momentum", "nan"]),
    Row("weight-decay-negative", TRAIN + ["--weight-decay", "-1"], ["weight decay", "-1"]),
    Row("weight-decay-nan", TRAIN + ["--weight-decay", "nan"], ["weight decay", "nan"]),
    Row("weight-decay-inf", TRAIN + ["--weight-decay", "inf"], ["weight decay", "inf"]),
    Row("lr-zero", TRAIN + ["--lr", "0"], ["learning rate", "0"]),
    Row("lr-nan", TRAIN + ["--lr", "nan"], ["learning rate", "nan"]),
    Row("epochs-zero", TRAIN + ["--epochs", "0"], ["epochs", "0"]),
    Row("train-batch-size-zero", TRAIN + ["--batch-size", "0"], ["batch size", "0"]),
    Row("train-limit-zero", TRAIN + ["--limit", "0"], ["--limit", "0"]),
    Row("train-limit-abc", TRAIN + ["--limit", "abc"], ["--limit", "abc"]),
    Row("optimizer-unknown", TRAIN + ["--optimizer", "adamw"], ["adamw"]),
    Row("schedule-unknown", TRAIN + ["--schedule", "linear"], ["linear"]),
    Row("checkpoint-every-zero", TRAIN + ["--checkpoint-every", "0"], ["checkpoint_every", "0"]),
    Row("defense-unknown", TRAIN + ["--defense", "madry"], ["madry"]),
    Row("train-model-unknown", TRAIN + ["--model", "resnet"], ["resnet"]),
    Row("train-param-unused", TRAIN + ["--param", "nosuch=1"], ["nosuch"]),
    Row("train-param-no-equals", TRAIN + ["--param", "steps"], ["steps", "key=value"]),
    Row("train-model-param-unknown", TRAIN + ["--model-param", "depth=3"], ["depth"]),
    Row("resume-other-optimizer", RESUME + ["--optimizer", "adam"], ["optimizer", "adam"], checkpoint_copy),
    Row("resume-other-lr", RESUME + ["--lr", "0.1"], ["lr", "0.1"], checkpoint_copy),
    Row("resume-other-momentum", RESUME + ["--momentum", "0.5"], ["momentum", "0.5"], checkpoint_copy),
    Row("resume-other-weight-decay", RESUME + ["--weight-decay", "0.001"], ["weight_decay", "0.001"],
        checkpoint_copy),
    Row("resume-other-schedule", RESUME + ["--schedule", "cosine"], ["schedule", "cosine"], checkpoint_copy),
    Row("resume-other-batch-size", RESUME + ["--batch-size", "32"], ["batch_size", "32"], checkpoint_copy),
    Row("resume-other-defense", RESUME + ["--defense", "fgsm_at"], ["defense", "fgsm_at"], checkpoint_copy),
    Row("resume-other-seed", RESUME + ["--seed", "1"], ["seed", "1"], checkpoint_copy),
]

BOUND_ROWS = [
    Row("eval-seed-1e20", EVAL + ["--seed", "100000000000000000000"], ["--seed", "100000000000000000000"]),
    Row("eval-seed-negative", EVAL + ["--seed", "-1"], ["--seed", "-1"]),
    Row("eval-seed-float", EVAL + ["--seed", "1e20"], ["--seed", "1e20"]),
    Row("train-seed-2-63", TRAIN + ["--seed", str(2 ** 63)], ["--seed", str(2 ** 63)]),
    Row("transfer-seed-2-32", TRANSFER + ["--seed", str(2 ** 32)], ["--seed", str(2 ** 32)]),
    Row("lipschitz-in-channels-0", ["lipschitz", "--model", "mnist_cnn", "--in-channels", "0"],
        ["--in-channels", "0"]),
    Row("lipschitz-in-channels-negative", ["lipschitz", "--model", "mnist_cnn", "--in-channels", "-3"],
        ["--in-channels", "-3"]),
    Row("lipschitz-input-size-0", ["lipschitz", "--model", "mnist_cnn", "--input-size", "0"], ["--input-size", "0"]),
    Row("lipschitz-model-unknown", ["lipschitz", "--model", "lenet9"], ["lenet9"]),
    Row("lipschitz-output-folder", ["lipschitz", "--model", "mnist_cnn", "--output", "{tmp}/d"],
        ["--output", "{tmp}/d"], a_folder("d")),
    Row("lipschitz-plot-fifo", ["lipschitz", "--model", "mnist_cnn", "--plot", "{tmp}/p"], ["--plot", "{tmp}/p"],
        a_fifo("p")),
]

REPORT_ROWS = [
    Row("report-missing-file", ["report", "{tmp}/none.json"], ["{tmp}/none.json"]),
    Row("report-not-json", ["report", "{tmp}/r.json"], ["{tmp}/r.json", "not JSON"], a_file("r.json", "{oops")),
    Row("report-empty-file", ["report", "{tmp}/r.json"], ["{tmp}/r.json"], a_file("r.json", "")),
    Row("report-other-schema", ["report", "{tmp}/r.json"], ["{tmp}/r.json", "advframe.eval/2"],
        doc_file("r.json", lambda d: d.update(schema="advframe.eval/2"))),
    Row("report-json-list", ["report", "{tmp}/r.json"], ["{tmp}/r.json", "schema"],
        doc_file("r.json", lambda d: [d])),
    Row("report-no-runs", ["report", "{tmp}/r.json"], ["{tmp}/r.json", "'runs' is missing"],
        doc_file("r.json", lambda d: d.pop("runs") and None)),
    Row("report-runs-not-list", ["report", "{tmp}/r.json"], ["{tmp}/r.json", "'runs'"],
        doc_file("r.json", lambda d: d.update(runs={"a": 1}))),
    Row("report-run-eps-string", ["report", "{tmp}/r.json"], ["{tmp}/r.json", "runs[0].eps", "\"0.1\""],
        doc_file("r.json", lambda d: d["runs"][0].update(eps="0.1"))),
    Row("report-run-no-attack", ["report", "{tmp}/r.json"], ["{tmp}/r.json", "runs[0].attack"],
        doc_file("r.json", lambda d: d["runs"][0].pop("attack") and None)),
    Row("report-top1-above-1", ["report", "{tmp}/r.json"], ["{tmp}/r.json", "runs[0].top1", "1.5"],
        doc_file("r.json", lambda d: d["runs"][0].update(top1=1.5))),
    Row("report-clean-missing", ["report", "{tmp}/r.json"], ["{tmp}/r.json", "'clean' is missing"],
        doc_file("r.json", lambda d: d.pop("clean") and None)),
    Row("report-clean-top1-string", ["report", "{tmp}/r.json"], ["{tmp}/r.json", "clean.top1"],
        doc_file("r.json", lambda d: d["clean"].update(top1="90%"))),
    Row("report-transfer-no-matrices", ["report", "{tmp}/t.json"], ["{tmp}/t.json", "'matrices' is missing"],
        doc_file("t.json", lambda d: d.pop("matrices") and None, TRANSFER_DOC)),
    Row("report-transfer-matrix-shape", ["report", "{tmp}/t.json"], ["{tmp}/t.json", "1x1 matrix"],
        doc_file("t.json", lambda d: d["matrices"][0]["error_rate"].update(top1=[[0.5, 0.2]]), TRANSFER_DOC)),
    Row("report-transfer-run-no-source", ["report", "{tmp}/t.json"], ["{tmp}/t.json", "runs[0].source"],
        doc_file("t.json", lambda d: d["runs"][0].pop("source") and None, TRANSFER_DOC)),
    Row("report-eps-abc", ["report", "{tmp}/r.json", "--eps", "abc"], ["abc"], good_eval_doc),
    Row("report-same-file-twice", ["report", "{tmp}/r.json", "{tmp}/./r.json"], ["{tmp}/r.json", "given twice"],
        good_eval_doc),
]

NAME_ROWS = [
    Row("attack-typo", EVAL + ["--attack", "iter_lll"], ["iter_lll", "iter_ll"]),
    Row("model-unknown", EVAL + ["--model", "lenet9"], ["lenet9"]),
    Row("list-kind-unknown", ["list", "widgets"], ["widgets"]),
    Row("transfer-attack-unknown", TRANSFER + ["--attack", "fgsn"], ["fgsn"]),
    Row("transfer-source-unknown", ["transfer", "--source", "lenet9", "--target-model", "mnist_cnn_standard"], ["lenet9"]),
    Row("norm-l3", EVAL + ["--norm", "l3"], ["l3"]),
    Row("target-mode-unknown", EVAL + ["--targeted", "--target", "most_likely"], ["most_likely"]),
    Row("command-unknown", ["evaluate"], ["evaluate"]),
    Row("option-unknown", EVAL + ["--bogus"], ["--bogus"]),
    Row("device-unknown", EVAL + ["--device", "tpu"], ["tpu"]),
    Row("devices-zero", EVAL + ["--devices", "0"], ["--devices", "0"]),
]

EPS_ROWS = [Row(f"eps-{name}", EVAL + ["--attack", "fgsm", "--eps", value], [value])
            for name, value in (("negative", "-0.1"), ("nan", "nan"), ("div-zero", "1/0"), ("word", "abc"),
                                ("inf", "inf"), ("half-fraction", "1/"))]
EPS_ROWS += [Row("transfer-eps-word", TRANSFER + ["--eps", "8/255x"], ["8/255x"])]

COUNT_ROWS = [
    Row("eval-batch-size-zero", EVAL + ["--batch-size", "0"], ["--batch-size", "0"]),
    Row("eval-batch-size-negative", EVAL + ["--batch-size", "-5"], ["--batch-size", "-5"]),
    Row("eval-batch-size-word", EVAL + ["--batch-size", "many"], ["--batch-size", "many"]),
    Row("transfer-batch-size-zero", TRANSFER + ["--batch-size", "0"], ["--batch-size", "0"]),
    Row("eval-limit-zero", EVAL + ["--limit", "0"], ["--limit", "0"]),
    Row("eval-limit-negative", EVAL + ["--limit", "-1"], ["--limit", "-1"]),
    Row("transfer-limit-zero", TRANSFER + ["--limit", "0"], ["--limit", "0"]),
]

PARAM_ROWS = [
    Row("param-no-equals", EVAL + ["--attack", "pgd", "--param", "steps"], ["steps", "key=value"]),
    Row("param-empty-key", EVAL + ["--attack", "pgd", "--param", "=3"], ["=3"]),
    Row("param-unused", EVAL + ["--attack", "pgd", "--param", "stepz=3"], ["stepz"]),
    Row("param-bad-int", EVAL + ["--attack", "pgd", "--param", "pgd.steps=abc"], ["steps", "abc"]),
    Row("param-scope-not-selected", EVAL + ["--attack", "pgd", "--param", "fgsm.eps=3"], ["fgsm"]),
    Row("param-unknown-preset", EVAL + ["--attack", "pgd", "--param", "preset=nope"], ["nope"]),
]

# ---- rows added for the commands and options that were thin above (each found clean, or fixed to be)

UT = ["--model", "mnist_cnn", "--untrained"]
ARR = ["--dataset", "{tmp}/d.npz"]
REP = ["report", "{tmp}/r.json"]
TG = ["train-generator", "--no-progress", "--out", "{tmp}/g.safetensors"]
LIP = ["lipschitz", "--model", "mnist_cnn"]

MORE_EPS_ROWS = [Row(f"eps-{name}", EVAL + ["--attack", "fgsm", "--eps", value], [value])
                 for name, value in (("double-fraction", "8/255/2"), ("overflow", "1e400"),
                                     ("negative-fraction", "-8/255"))]
MORE_EPS_ROWS += [Row("eps-empty", EVAL + ["--attack", "fgsm", "--eps", ""], ["eps ''"])]

MORE_EVAL_ROWS = [
    Row("norm-uppercase", EVAL + ["--norm", "L2"], ["'L2'", "linf, l2"]),
    Row("norm-not-supported", EVAL + ["--norm", "l2", "--attack", "fgsm"], ["fgsm", "l2", "--norm linf"]),
    Row("targeted-untargetable", EVAL + ["--targeted", "--attack", "deepfool"], ["deepfool", "--targeted"]),
    Row("model-empty", EVAL + ["--model", ""], ["--model", "''"]),
    Row("suite-unknown", EVAL + ["--suite", "autoatack"], ["autoatack"]),
    Row("suite-and-attack", EVAL + ["--suite", "autoattack", "--attack", "fgsm"], ["--suite autoattack", "fgsm"]),
    Row("devices-negative", EVAL + ["--devices", "-1"], ["--devices", "-1"]),
    Row("seed-2-32", EVAL + ["--seed", str(2 ** 32)], ["--seed", str(2 ** 32)]),
    Row("limit-float", EVAL + ["--limit", "1e3"], ["--limit", "1e3"]),
    Row("model-param-abc", EVAL + UT + ["--model-param", "width=abc"], ["width='abc'"]),
    Row("model-param-inf", EVAL + UT + ["--model-param", "width=inf"], ["width = inf"]),
    Row("model-param-1e308", EVAL + UT + ["--model-param", "width=1e308"], ["width = 1e+308"]),
    Row("model-param-scoped", EVAL + UT + ["--model-param", "net.width=2"], ["'net'", "width"]),
    Row("model-param-no-equals", EVAL + UT + ["--model-param", "width"], ["'width'", "key=value"]),
    Row("normalize-zero-std", EVAL + ["--normalize", "0.5/0"], ["std", "0.0"]),
    Row("normalize-arity", EVAL + ["--normalize", "0.5,0.5/0.2"], ["2 values", "1"]),
    Row("normalize-channels", EVAL + UT + ["--normalize", "0.5,0.5,0.5/0.2,0.2,0.2"], ["3 values", "1 channels"]),
    Row("normalize-nan", EVAL + ["--normalize", "nan/0.3"], ["mean", "nan"]),
    Row("param-steps-1e23", EVAL + ["--attack", "pgd", "--param", "pgd.steps=" + "1" + "0" * 23],
        ["steps=1" + "0" * 23, "at most 1,000,000"]),
    Row("param-max-iterations-huge", EVAL + ["--attack", "cw_l2", "--norm", "l2", "--param",
                                             "cw_l2.max_iterations=99999999999"], ["max_iterations=99999999999"]),
    Row("param-seed-negative", EVAL + ["--attack", "pgd", "--param", "pgd.seed=-1"], ["seed -1", "2**32"]),
    Row("param-step-size-nan", EVAL + ["--attack", "pgd", "--param", "pgd.step_size=nan"], ["step_size=nan"]),
    Row("param-step-size-inf", EVAL + ["--attack", "pgd", "--param", "pgd.step_size=inf"], ["step_size=inf"]),
    Row("param-bool-maybe", EVAL + ["--attack", "pgd", "--param", "pgd.random_start=maybe"], ["'maybe'", "bool"]),
    Row("param-steps-float", EVAL + ["--attack", "pgd", "--param", "pgd.steps=2.5"], ["'2.5'", "int"]),
]

ARRAY_ROWS = [
    Row("array-nan", EVAL + UT + ARR, ["example 2", "NaN"], npz(x=with_nan)),
    Row("array-out-of-range", EVAL + UT + ARR, ["outside the bounds", "2.5"],
        npz(x=lambda x: np.where(x > 0.9, 2.5, x).astype(np.float32))),
    Row("array-label-count", EVAL + UT + ARR, ["6 inputs but 4 labels"], npz(y=np.arange(4))),
    Row("array-float-labels", EVAL + UT + ARR, ["float64", "integers"], npz(y=np.arange(6.0))),
    Row("array-no-labels", EVAL + UT + ARR, ["{tmp}/d.npz", "x and y"], npz(y=None)),
    Row("array-zero-examples", EVAL + UT + ARR, ["{tmp}/d.npz", "no examples"],
        npz(x=np.zeros((0, 1, 28, 28), np.float32), y=np.zeros(0, np.int64))),
    Row("array-3d", EVAL + UT + ARR, ["(6, 28, 28)", "x[:, None]"], npz(x=lambda x: x[:, 0])),
    Row("array-bounds-reversed", EVAL + UT + ARR, ["bounds [1, 0]"], npz(bounds=np.array([1.0, 0.0]))),
    Row("array-eps-negative", EVAL + UT + ARR, ["eps -0.1"], npz(eps=np.array([-0.1]))),
    Row("array-label-beyond-model", EVAL + UT + ARR, ["label 15", "10 classes"],
        npz(y=np.array([0, 1, 2, 3, 4, 15]))),
    Row("array-negative-label", EVAL + UT + ARR, ["label -2"], npz(y=np.array([0, 1, -2, 3, 4, 5]))),
    Row("array-missing", EVAL + UT + ["--dataset", "{tmp}/none.npz"], ["{tmp}/none.npz"]),
    Row("array-not-npz", EVAL + UT + ARR, ["{tmp}/d.npz"], a_file("d.npz", "garbage")),
    Row("array-shape-not-model", EVAL + UT + ARR, ["3x8x8", "1x28x28"],
        npz(x=np.full((6, 3, 8, 8), 0.5, np.float32))),
    Row("train-array-label-beyond-model", TRAIN + ARR, ["label 15", "10 classes"],
        npz(x_train=np.full((6, 1, 28, 28), 0.5, np.float32), y_train=np.array([0, 1, 2, 3, 4, 15]))),
    Row("train-array-no-train-split", TRAIN + ARR, ["x_test, y_test", "x_train"],
        npz(x=None, y=None, x_test=np.full((6, 1, 28, 28), 0.5, np.float32), y_test=np.arange(6))),
]

MORE_TRAIN_ROWS = [
    Row("epochs-negative", TRAIN + ["--epochs", "-1"], ["epochs", "-1"]),
    Row("epochs-nan", TRAIN + ["--epochs", "nan"], ["--epochs", "nan"]),
    Row("train-batch-size-negative", TRAIN + ["--batch-size", "-1"], ["batch size", "-1"]),
    Row("lr-inf", TRAIN + ["--lr", "inf"], ["learning rate", "inf"]),
    Row("lr-negative", TRAIN + ["--lr", "-0.1"], ["learning rate", "-0.1"]),
    Row("momentum-one", TRAIN + ["--momentum", "1"], ["momentum", "1.0", "[0, 1)"]),
    Row("momentum-two", TRAIN + ["--momentum", "2"], ["momentum", "2.0"]),
    Row("checkpoint-every-negative", TRAIN + ["--checkpoint-every", "-5"], ["checkpoint_every", "-5"]),
    Row("train-devices-zero", TRAIN + ["--devices", "0"], ["--devices", "0"]),
    Row("amp-without-cuda", TRAIN + ["--amp", "--device", "cpu"], ["amp", "CUDA"]),
    Row("train-model-empty", TRAIN + ["--model", ""], ["--model", "''"]),
    Row("train-dataset-blank", TRAIN + ["--dataset", " "], ["--dataset", "' '"]),
    Row("train-seed-negative", TRAIN + ["--seed", "-1"], ["--seed", "-1"]),
    Row("train-model-param-abc", TRAIN + ["--model-param", "width=abc"], ["width='abc'"]),
    Row("train-normalize-zero-std", TRAIN + ["--normalize", "0.1/0"], ["std", "0.0"]),
    Row("defense-param-nan", TRAIN + ["--defense", "fgsm_at", "--param", "eps=nan"], ["fgsm_at", "eps=nan"]),
    Row("resume-not-a-checkpoint", RESUME, ["{tmp}/ck.safetensors", "safetensors"],
        a_file("ck.safetensors", "not a checkpoint")),
    Row("resume-other-model-param", RESUME + ["--model-param", "width=2"], ["model_config", "'width': 2"],
        checkpoint_copy),
    Row("tg-epochs-zero", TG + ["--epochs", "0"], ["epochs", "0"]),
    Row("tg-width-zero", TG + ["--width", "0"], ["width k=0"]),
    Row("tg-norm-unknown", TG + ["--norm", "l3"], ["'l3'"]),
    Row("tg-generator-unknown", TG + ["--generator", "g9"], ["'g9'"]),
    Row("tg-eps-word", TG + ["--eps", "big"], ["'big'"]),
    Row("tg-out-folder", ["train-generator", "--no-progress", "--out", "{tmp}/d"], ["--out", "{tmp}/d", "folder"],
        a_folder("d")),
    Row("tg-seed-negative", TG + ["--seed", "-1"], ["--seed", "-1"]),
]

MORE_REPORT_ROWS = [
    Row("report-no-file", ["report"], ["results"]),
    Row("report-eps-negative", REP + ["--eps", "-1"], ["eps -1"], good_eval_doc),
    Row("report-eps-not-held", ["report", "{tmp}/t.json", "--eps", "0.5"], ["eps 0.5", "0.1"],
        doc_file("t.json", lambda d: None, TRANSFER_DOC)),
    Row("report-run-not-object", REP, ["{tmp}/r.json", "runs[0] is not an object"],
        doc_file("r.json", lambda d: d.update(runs=[1]))),
    Row("report-top1-nan", REP, ["runs[0].top1", "NaN"],
        doc_file("r.json", lambda d: d["runs"][0].update(top1=float("nan")))),
    Row("report-examples-negative", REP, ["'examples' is -3"], doc_file("r.json", lambda d: d.update(examples=-3))),
    Row("report-eps-infinity", REP, ["runs[0].eps", "Infinity"],
        doc_file("r.json", lambda d: d["runs"][0].update(eps=float("inf")))),
    Row("report-eps-negative-in-doc", REP, ["runs[0].eps", "-0.1"],
        doc_file("r.json", lambda d: d["runs"][0].update(eps=-0.1))),
    Row("report-norm-l3", REP, ["runs[0].norm", "l3"], doc_file("r.json", lambda d: d["runs"][0].update(norm="l3"))),
    Row("report-checks-string", REP, ["'checks'", "list of objects"],
        doc_file("r.json", lambda d: d.update(checks="none"))),
    Row("report-params-list", REP, ["runs[0].params", "object"],
        doc_file("r.json", lambda d: d["runs"][0].update(params=[1]))),
    Row("report-nested-too-deeply", REP, ["{tmp}/r.json", "nested too deeply"], deeply_nested),
    Row("report-binary", REP, ["{tmp}/r.json", "not JSON"],
        lambda tmp, res: (tmp / "r.json").write_bytes(b"\xff\xfe\x00\x80 binary")),
    Row("report-folder", ["report", "{tmp}/d"], ["{tmp}/d"], a_folder("d")),
    Row("report-schema-missing", REP, ["schema None"], doc_file("r.json", lambda d: d.pop("schema") and None)),
    Row("report-transfer-clean-missing", ["report", "{tmp}/t.json"], ["'clean.a' is missing"],
        doc_file("t.json", lambda d: d.update(clean={}), TRANSFER_DOC)),
    Row("report-transfer-sources-string", ["report", "{tmp}/t.json"], ["'sources'", "list"],
        doc_file("t.json", lambda d: d.update(sources="a"), TRANSFER_DOC)),
    Row("report-plot-and-markdown-same", REP + ["--plot", "{tmp}/x", "--markdown", "{tmp}/x"],
        ["--markdown", "--plot", "{tmp}/x"], good_eval_doc),
]

MORE_COMMAND_ROWS = [
    Row("list-uppercase", ["list", "ATTACKS"], ["'ATTACKS'"]),
    Row("list-two-kinds", ["list", "attacks", "models"], ["models"]),
    Row("list-empty-kind", ["list", ""], ["kind ''"]),
    Row("plugins-extra-argument", ["plugins", "extra"], ["extra"]),
    Row("plugins-unknown-option", ["plugins", "--bogus"], ["--bogus"]),
    Row("lipschitz-input-size-2", LIP + ["--input-size", "2"], ["1x2x2", "--input-size"]),
    Row("lipschitz-input-size-huge", LIP + ["--input-size", "1000000"], ["--input-size 1000000"]),
    Row("lipschitz-in-channels-3", LIP + ["--in-channels", "3"], ["3x28x28", "--in-channels"]),
    Row("lipschitz-model-param-abc", LIP + ["--model-param", "width=abc"], ["width='abc'"]),
    Row("lipschitz-model-param-unknown", LIP + ["--model-param", "depth=3"], ["'depth'"]),
    Row("lipschitz-no-model", ["lipschitz"], ["--model"]),
    Row("lipschitz-missing-checkpoint", ["lipschitz", "--model", "{tmp}/none.safetensors"], ["{tmp}/none.safetensors"]),
]

ROWS: list[Row] = (DATA_ROWS + OUTPUT_ROWS + PARTIAL_ROWS + TRAIN_ROWS + BOUND_ROWS + REPORT_ROWS + NAME_ROWS
                   + EPS_ROWS + COUNT_ROWS + PARAM_ROWS + MORE_EPS_ROWS + MORE_EVAL_ROWS + ARRAY_ROWS
                   + MORE_TRAIN_ROWS + MORE_REPORT_ROWS + MORE_COMMAND_ROWS)

# one per command family: data, outputs, training settings, reports, plugin commands
SUBPROCESS = ("gzip-corrupt-stream", "eval-output-fifo", "momentum-nan", "report-nested-too-deeply",
              "lipschitz-in-channels-0")


@pytest.fixture(scope="module")
def res(tmp_path_factory) -> Resources:
    return Resources(tmp_path_factory.mktemp("shared"))


def prepare(row: Row, tmp: Path, res: Resources) -> tuple[list[str], list[str]]:
    if row.setup is not None:
        row.setup(tmp, res)
    fill = (lambda s: s.replace("{tmp}", str(tmp)))
    return [fill(a) for a in row.argv], [fill(n) for n in row.needles]


def check(code: int, output: str, needles: list[str], row: Row) -> None:
    assert "Traceback" not in output, f"{row.id}: traceback\n{output}"
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert code == 2, f"{row.id}: exit {code}\n{output}"
    assert len(lines) == 1, f"{row.id}: {len(lines)} lines\n{output}"
    for n in needles:
        assert n in lines[0], f"{row.id}: {n!r} not in {lines[0]!r}"


def test_the_table_is_big_and_ids_are_unique():
    ids = [r.id for r in ROWS]
    assert len(ids) == len(set(ids)) and len(ids) >= 200
    assert set(SUBPROCESS) <= set(ids)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_is_one_line_and_exit_2(row, tmp_path, res):
    argv, needles = prepare(row, tmp_path, res)
    out = invoke(argv)
    check(out.code, out.output, needles, row)


@pytest.mark.parametrize("row", [r for r in ROWS if r.id in SUBPROCESS], ids=[r.id for r in ROWS if r.id in SUBPROCESS])
def test_bad_input_through_the_console_script(row, tmp_path, res):
    argv, needles = prepare(row, tmp_path, res)
    proc = run_cli(*argv)
    check(proc.returncode, proc.stdout + proc.stderr, needles, row)


# ---------------------------------------------------------------- beyond one-line errors


def test_check_output_path_refuses_a_device_node_without_touching_it(tmp_path):
    from advframe.cli.outputs import check_output_path
    from advframe.errors import ParameterError

    devnull = Path(os.devnull)
    before = os.stat(devnull)
    with pytest.raises(ParameterError, match="not a regular file"):
        check_output_path(devnull, "--output")
    assert os.stat(devnull).st_rdev == before.st_rdev
    assert check_output_path(tmp_path / "new.json", "--output") == tmp_path / "new.json"
    (tmp_path / "old.json").write_text("{}")
    assert check_output_path(tmp_path / "old.json", "--output") == tmp_path / "old.json"
    assert check_output_path(None, "--output") is None


def test_devnull_output_is_refused_before_any_work():
    out = invoke(["eval", "--no-progress", "--no-checks", "--output", os.devnull])
    assert out.code == 2 and len(out.lines) == 1 and os.devnull in out.lines[0]
    assert not Path(os.devnull).is_file()


def test_partial_state_survives_a_kill_during_the_checks(tmp_path, monkeypatch):
    import advframe.checks

    out = tmp_path / "r.json"
    state = Path(str(out) + ".partial")
    args = ["eval", "--attack", "fgsm", "--eps", "0.1", "--limit", "20", "--batch-size", "10", "--no-progress",
            "--output", str(out)]

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(advframe.checks, "run_checks", killed)
    first = invoke(args)
    assert first.code == 130 and not out.exists()
    saved = json.loads(state.read_text())  # the attack work is still on disk
    assert saved["done"] == [0, 10]
    monkeypatch.undo()

    import advframe.evaluation

    calls = []
    real = advframe.evaluation.classify
    monkeypatch.setattr(advframe.evaluation, "classify", lambda *a: calls.append(1) or real(*a))
    second = invoke(args + ["--resume", "--no-checks"])
    assert second.code == 0, second.output
    assert calls == []  # every batch came from the state: no attack or clean pass was redone
    doc = json.loads(out.read_text())
    assert doc["examples"] == 20 and doc["runs"][0]["attack"] == "fgsm"
    assert not state.exists() and not Path(str(state) + ".kept").exists()


def test_a_finished_run_without_resume_leaves_no_state(tmp_path):
    out = tmp_path / "r.json"
    res = invoke(["eval", "--attack", "fgsm", "--eps", "0.1", "--limit", "10", "--no-progress", "--no-checks",
                  "--output", str(out)])
    assert res.code == 0, res.output
    assert out.is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_report_plot_without_matplotlib_still_writes_markdown(tmp_path, monkeypatch):
    (tmp_path / "r.json").write_text(json.dumps(EVAL_DOC))
    md, png = tmp_path / "r.md", tmp_path / "r.png"
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    out = invoke(["report", str(tmp_path / "r.json"), "--plot", str(png), "--markdown", str(md)])
    assert out.code == 2 and "Traceback" not in out.output
    last = out.lines[-1]
    assert last.startswith("error:") and "pip install matplotlib" in last and "advframe[plot]" not in last
    assert "tables were printed" in last and str(md) in last
    assert md.is_file() and "fgsm" in md.read_text() and not png.exists()
    assert "fgsm" in out.output  # the table itself


def test_resume_with_the_same_settings_is_not_refused(tmp_path, res):
    shutil.copy(res.checkpoint(), tmp_path / "ck.safetensors")
    import advframe

    result = advframe.train("mnist_cnn", "mnist5k", epochs=5, batch_size=64, optimizer="sgd", lr=0.05,
                            momentum=0.9, weight_decay=0.0, schedule="none", seed=0,
                            out=tmp_path / "ck.safetensors", max_steps=2, resume=True)
    assert result.steps == 2


# ---------------------------------------------------------------- the Python API


@dataclass
class ApiRow:
    id: str
    call: Callable[[], object]
    error: type
    needles: list[str]


def _net():
    import advframe

    return advframe.build_model("mnist_cnn", width=0.25)


def _xy(labels: list[int] | None = None, dtype=None):
    import torch

    g = torch.Generator().manual_seed(0)
    y = torch.tensor(labels if labels is not None else [0, 1, 2, 3, 4, 5])
    return torch.rand(len(y), 1, 28, 28, generator=g), (y if dtype is None else y.to(dtype))


def _labeled(labels: list[int] | None = None):
    from advframe.dataset import LabeledData

    x, y = _xy(labels)
    return LabeledData(x, y, max(10, int(y.max()) + 1) if len(y) else 10)


def _api_rows() -> list[ApiRow]:
    import math

    import torch

    import advframe
    from advframe.errors import CheckpointError, DataError, ParameterError, ThreatModelError, UnknownNameError

    def ev(**kw):
        data = kw.pop("data", None)
        return lambda: advframe.evaluate(_net(), data if data is not None else _xy(),
                                         **{"attacks": ["fgsm"], "eps": [0.1], **kw})

    return [
        ApiRow("api-evaluate-eps-negative", ev(eps=[-0.1]), ThreatModelError, ["eps -0.1"]),
        ApiRow("api-evaluate-eps-word", ev(eps=["abc"]), ThreatModelError, ["'abc'"]),
        ApiRow("api-evaluate-batch-size-float", ev(batch_size=2.5), ParameterError, ["batch size 2.5"]),
        ApiRow("api-evaluate-limit-zero", ev(limit=0), ParameterError, ["limit 0"]),
        ApiRow("api-evaluate-seed-negative", ev(seed=-1), ParameterError, ["seed -1"]),
        ApiRow("api-evaluate-seed-1e20", ev(seed=10 ** 20), ParameterError, ["seed " + str(10 ** 20)]),
        ApiRow("api-evaluate-device-unknown", ev(device="tpu"), ParameterError, ["'tpu'"]),
        ApiRow("api-evaluate-unknown-setting", ev(bogus=1), ParameterError, ["'bogus'"]),
        ApiRow("api-evaluate-target-mode", ev(targeted=True, target="most"), ParameterError, ["'most'"]),
        ApiRow("api-evaluate-state-path-folder", ev(state_path=os.getcwd()), ParameterError, ["state_path", "folder"]),
        ApiRow("api-evaluate-labels-float", ev(data=_xy(dtype=None)[:1] + (torch.arange(6.0),)), DataError,
               ["torch.float32", "integers"]),
        ApiRow("api-evaluate-label-beyond-model", ev(data=_xy([0, 1, 2, 3, 4, 15])), DataError, ["label 15", "10 classes"]),
        ApiRow("api-evaluate-no-examples", ev(data=(torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.long))),
               DataError, ["no examples"]),
        ApiRow("api-evaluate-data-name", ev(data="mnist5k"), DataError, ["'mnist5k'", "load_dataset"]),
        ApiRow("api-evaluate-attack-not-attack", ev(attacks=[3]), ParameterError, ["attack 3"]),
        ApiRow("api-evaluate-input-shape", ev(data=(torch.rand(6, 3, 8, 8), torch.arange(6))), DataError,
               ["3x8x8", "1x28x28"]),
        ApiRow("api-evaluate-steps-1e23", ev(attacks=["pgd"], params={"pgd": {"steps": 10 ** 23}}), ParameterError,
               ["steps=" + str(10 ** 23)]),
        ApiRow("api-build-model-width-abc", lambda: advframe.build_model("mnist_cnn", width="abc"), ParameterError,
               ["width='abc'"]),
        ApiRow("api-build-model-width-inf", lambda: advframe.build_model("mnist_cnn", width=math.inf), ParameterError,
               ["width = inf"]),
        ApiRow("api-build-model-unknown-key", lambda: advframe.build_model("mnist_cnn", depth=3), ParameterError,
               ["'depth'"]),
        ApiRow("api-load-model-unknown", lambda: advframe.load_model("lenet9"), UnknownNameError, ["'lenet9'"]),
        ApiRow("api-load-model-missing-file", lambda: advframe.load_model(os.path.join(os.getcwd(), "none.safetensors")),
               CheckpointError, ["none.safetensors"]),
        ApiRow("api-load-model-device", lambda: advframe.load_model("mnist_cnn_standard", device="tpu"), ParameterError,
               ["'tpu'"]),
        ApiRow("api-load-model-config-list", lambda: advframe.load_model("mnist_cnn", config=[1]), ParameterError,
               ["config is list"]),
        ApiRow("api-get-attack-steps-huge", lambda: advframe.get_attack("pgd", steps=10 ** 23), ParameterError,
               ["attack 'pgd'", "steps="]),
        ApiRow("api-get-attack-seed-huge", lambda: advframe.get_attack("pgd", seed=10 ** 30), ParameterError,
               ["seed " + str(10 ** 30)]),
        ApiRow("api-get-attack-steps-word", lambda: advframe.get_attack("pgd", steps="abc"), ParameterError, ["'abc'"]),
        ApiRow("api-get-attack-unknown-param", lambda: advframe.get_attack("pgd", stepz=3), ParameterError,
               ["'stepz'", "'steps'"]),
        ApiRow("api-get-attack-square-queries", lambda: advframe.get_attack("square", queries=10 ** 12), ParameterError,
               ["queries=" + str(10 ** 12)]),
        ApiRow("api-get-defense-steps-huge", lambda: advframe.get_defense("pgd_at", steps=10 ** 9), ParameterError,
               ["defense 'pgd_at'", "steps="]),
        ApiRow("api-threat-eps-bool", lambda: advframe.ThreatModel(eps=True), ThreatModelError, ["eps True"]),
        ApiRow("api-threat-eps-nan", lambda: advframe.ThreatModel(eps=math.nan), ThreatModelError, ["eps nan"]),
        ApiRow("api-threat-norm-l1", lambda: advframe.ThreatModel(norm="l1"), ThreatModelError, ["'l1'"]),
        ApiRow("api-threat-bounds-reversed", lambda: advframe.ThreatModel(bounds=(1, 0)), ThreatModelError, ["bounds"]),
        ApiRow("api-threat-tolerance-negative", lambda: advframe.ThreatModel(tolerance=-1), ThreatModelError,
               ["tolerance -1"]),
        ApiRow("api-normalized-zero-std", lambda: advframe.Normalized(_net(), [0.5], [0.0]), ParameterError, ["std"]),
        ApiRow("api-normalized-arity", lambda: advframe.Normalized(_net(), [0.5, 0.5], [0.2]), ParameterError,
               ["2 values", "1"]),
        ApiRow("api-normalized-channels", lambda: advframe.Normalized(_net(), [0.5] * 3, [0.2] * 3)(_xy()[0]),
               ParameterError, ["3 values", "1 channels"]),
        ApiRow("api-train-momentum-one", lambda: advframe.train("mnist_cnn", _labeled(), momentum=1.0), ParameterError,
               ["momentum", "1.0"]),
        ApiRow("api-train-epochs-float", lambda: advframe.train("mnist_cnn", _labeled(), epochs=1.5), ParameterError,
               ["epochs 1.5"]),
        ApiRow("api-train-seed-1e20", lambda: advframe.train("mnist_cnn", _labeled(), seed=10 ** 20), ParameterError,
               ["seed " + str(10 ** 20)]),
        ApiRow("api-train-label-beyond-model", lambda: advframe.train("mnist_cnn", _labeled([0, 1, 2, 3, 4, 15])),
               DataError, ["label 15", "10 classes"]),
        ApiRow("api-train-out-folder", lambda: advframe.train("mnist_cnn", _labeled(), out=os.getcwd()), ParameterError,
               ["folder"]),
        ApiRow("api-load-dataset-split", lambda: advframe.load_dataset("mnist5k", split="val"), DataError, ["'val'"]),
    ]


API_IDS = [r.id for r in _api_rows()]


@pytest.mark.parametrize("row_id", API_IDS)
def test_bad_api_input_raises_one_clear_error(row_id, tmp_path, monkeypatch):
    from advframe.errors import AdvframeError

    monkeypatch.chdir(tmp_path)
    row = next(r for r in _api_rows() if r.id == row_id)
    with pytest.raises(AdvframeError) as caught:
        row.call()
    assert isinstance(caught.value, row.error), f"{row.id}: {type(caught.value).__name__}: {caught.value}"
    text = str(caught.value)
    assert "\n" not in text.strip(), f"{row.id}: several lines: {text}"
    for n in row.needles:
        assert n in text, f"{row.id}: {n!r} not in {text!r}"


def test_the_tables_hold_150_distinct_bad_inputs():
    from tests.test_checkpoint_inputs import ROWS as CHECKPOINT_ROWS

    ids = [r.id for r in ROWS] + API_IDS + list(CHECKPOINT_ROWS)
    assert len(ids) == len(set(ids)) and len(ids) >= 150, len(ids)
