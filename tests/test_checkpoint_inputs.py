"""Bad checkpoints and model options: each is one line on stderr, exit 2, no traceback.

The rows run the CLI in-process through ``advframe.cli.main`` (the console script's
entry point): Typer's CliRunner would bypass the translation of errors into one line
and exit code 2 that these rows check.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors.torch import save

import advframe
from advframe.checkpoint import TMP_SUFFIX, atomic_write_bytes, load_checkpoint, save_checkpoint
from advframe.cli import main

EVAL = ["eval", "--attack", "fgsm", "--eps", "0.1", "--limit", "5", "--no-progress", "--no-checks", "--device", "cpu"]


def run_main(args: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    return exc.value.code, capsys.readouterr().err


def cnn_state(width: float = 0.25) -> dict[str, torch.Tensor]:
    net = advframe.build_model("mnist_cnn", width=width)
    return {f"model.{k}": v for k, v in net.state_dict().items()}


def checkpoint(meta: dict, tensors: dict | None = None) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        path = tmp / "ck.safetensors"
        save_checkpoint(path, cnn_state() if tensors is None else tensors, meta)
        return [*EVAL, "--model", path]
    return make


def raw_meta(key: str, text: str) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        path = tmp / "raw.safetensors"
        meta = {"model": json.dumps("mnist_cnn"), key: text}
        path.write_bytes(save({k: v.contiguous() for k, v in cnn_state().items()}, metadata=meta))
        return [*EVAL, "--model", path]
    return make


def pickled(how: str) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        path = tmp / "weights.safetensors"
        if how == "torch":
            torch.save(cnn_state(), path)
        else:
            path.write_bytes(pickle.dumps({"w": [1, 2, 3]}, protocol=4))
        return [*EVAL, "--model", path]
    return make


def nan_weights(tmp: Path) -> list[str]:
    state = cnn_state()
    state["model.features.0.weight"][0, 0, 0, 0] = float("nan")
    return checkpoint({"model": "mnist_cnn", "model_config": {"width": 0.25}}, state)(tmp)


def inf_outputs(tmp: Path) -> list[str]:
    state = cnn_state()
    state["model.classifier.3.weight"].fill_(3e38)
    state["model.classifier.3.bias"].fill_(3e38)
    return checkpoint({"model": "mnist_cnn", "model_config": {"width": 0.25}}, state)(tmp)


def resume_without(missing: str) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        out = tmp / "run.safetensors"
        args = ["train", "--model", "mnist_cnn", "--model-param", "width=0.25", "--epochs", "1", "--batch-size", "500",
                "--out", out, "--no-progress", "--device", "cpu"]
        advframe.train("mnist_cnn", "mnist5k", model_config={"width": 0.25}, epochs=1, batch_size=500, max_steps=1,
                       out=out, dataset_name="mnist5k")
        tensors, meta = load_checkpoint(out)
        meta.pop("advframe_version")
        if missing == "optimizer_state":
            meta.pop("optimizer_state")
        else:
            tensors.pop("rng.torch")
        save_checkpoint(out, tensors, meta)
        return [*args, "--resume"]
    return make


def args_only(*extra: str) -> Callable[[Path], list[str]]:
    return lambda tmp: [*EVAL, *extra]


MNIST = {"model": "mnist_cnn"}
ROWS = {
    "unknown constructor key": (checkpoint({**MNIST, "model_config": {"width": 0.25, "depth": 3}}),
                                "no constructor key 'depth'"),
    "config is a list": (checkpoint({**MNIST, "model_config": [1, 2]}), "'model_config' is a list"),
    "config is a string": (checkpoint({**MNIST, "model_config": "wide"}), "'model_config' is a string"),
    "width abc": (checkpoint({**MNIST, "model_config": {"width": "abc"}}), "'width': 'abc'"),
    "width 1e5": (checkpoint({**MNIST, "model_config": {"width": 1e5}}), "parameters"),
    "width 1e308": (checkpoint({**MNIST, "model_config": {"width": 1e308}}), "width = 1e+308"),
    "width Infinity": (raw_meta("model_config", '{"width": Infinity}'), "width = inf"),
    "JSON nested 200000 deep": (raw_meta("model_config", "[" * 200_000 + "]" * 200_000), "nested too deeply"),
    "dataset is an object": (checkpoint({**MNIST, "model_config": {"width": 0.25}, "dataset": {"name": "x"}}),
                             "'dataset' is an object"),
    "tensors of the wrong shape": (checkpoint({**MNIST, "model_config": {"width": 0.5}}), "size mismatch"),
    "torch.save renamed": (pickled("torch"), "torch.save file"),
    "pickle renamed": (pickled("pickle"), "a pickle file"),
    "non-finite weights": (nan_weights, "'features.0.weight' holds NaN"),
    "non-finite outputs": (inf_outputs, "NaN or infinite outputs on clean example 0"),
    "data of the wrong shape": (lambda tmp: [*EVAL, "--model", "cifar_cnn", "--untrained"],
                                "has inputs of shape 1x28x28 but model 'cifar_cnn' expects 3x32x32"),
    "untrained architecture": (args_only("--model", "mnist_cnn"), "--untrained"),
    "bad --normalize": (args_only("--normalize", "0.5"), "--normalize '0.5'"),
    "bad --arch": (args_only("--arch", "os.system"), "--arch 'os.system'"),
    "resume without optimiser state": (resume_without("optimizer_state"), "optimizer_state"),
    "resume without RNG state": (resume_without("rng"), "rng.torch"),
}


@pytest.mark.parametrize("row", list(ROWS))
def test_bad_checkpoint_is_one_line(row, tmp_path, capsys):
    make, needle = ROWS[row]
    code, err = run_main(make(tmp_path), capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert "Traceback" not in err and len(lines) == 1, err
    assert needle in lines[0], lines[0]


def test_untrained_flag_allows_random_weights(capsys):
    code, err = run_main([*EVAL, "--model", "mnist_cnn", "--untrained"], capsys)
    assert code == 0, err


def test_stale_temp_files_of_a_killed_write_are_removed(tmp_path):
    target = tmp_path / "ck.safetensors"
    stale = tmp_path / f".ck.safetensors.x1y2z3{TMP_SUFFIX}"
    other = tmp_path / f".other.safetensors.abc{TMP_SUFFIX}"
    stale.write_bytes(b"half a checkpoint")
    other.write_bytes(b"someone else's")
    atomic_write_bytes(target, b"data")
    assert target.read_bytes() == b"data" and not stale.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, other.name])
