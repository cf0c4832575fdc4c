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
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import run_cli

# ---------------------------------------------------------------- the runner


@dataclass
class Outcome:
    code: int
    output: str  # stdout and stderr together, as a user sees them

    @property
    def lines(self) -> list[str]:
        return [ln for ln in self.output.splitlines() if ln.strip()]


def invoke(args: list[str]) -> Outcome:
    """Run ``advframe ARGS`` in-process (Typer's CliRunner isolation) through :func:`advframe.cli.main`."""
    from advframe.cli import main

    runner = CliRunner()
    with runner.isolation() as (_out, _err, both):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - a traceback is what the test must catch
            sys.stderr.write(traceback.format_exc())
            code = -1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        text = both.getvalue().decode("utf-8", "replace")
    return Outcome(code, text)


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
    Row("shape-eval", EVAL + ["--dataset", "cifar10", "--data-dir", "{tmp}/cifar"], ["(3, 32, 32)", "mnist_cnn_standard"],
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

ROWS: list[Row] = (DATA_ROWS + OUTPUT_ROWS + PARTIAL_ROWS + TRAIN_ROWS + BOUND_ROWS + REPORT_ROWS + NAME_ROWS
                   + EPS_ROWS + COUNT_ROWS + PARAM_ROWS)

SUBPROCESS = ("gzip-corrupt-stream", "eval-output-fifo", "momentum-nan", "eval-seed-1e20", "report-run-eps-string",
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
    assert len(ids) == len(set(ids)) and len(ids) >= 60
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
