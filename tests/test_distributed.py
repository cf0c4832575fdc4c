"""Several processes (gloo, CPU) agree with one, and training survives kill -9.

Each test runs the real console script: ``advframe train|eval --devices 2`` (the
built-in launcher) or ``torchrun --nproc-per-node 2 -m advframe`` (torch's launcher).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from advframe.checkpoint import load_checkpoint, read_metadata
from advframe.distributed import free_port

from tests.helpers import console_script, run_cli, run_process

pytestmark = pytest.mark.slow
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def weights(path: Path) -> dict[str, torch.Tensor]:
    tensors, _ = load_checkpoint(path)
    return {k: v for k, v in tensors.items() if k.startswith("model.")}


def train_args(out: Path, *extra: str) -> list[str]:
    return ["train", "--model", "mnist_cnn", "--dataset", "mnist5k", "--defense", "mixed_batch",
            "--param", "preset=mnist", "--limit", "2048", "--epochs", "1", "--batch-size", "32", "--lr", "0.01",
            "--seed", "3", "--out", str(out), "--no-progress", *extra]


def test_two_process_training_matches_one_process(tmp_path):
    one, two = tmp_path / "one.safetensors", tmp_path / "two.safetensors"
    r1 = run_cli(*train_args(one), env=ONE_THREAD)
    assert r1.returncode == 0, r1.stderr
    r2 = run_cli(*train_args(two, "--devices", "2"), env=ONE_THREAD)
    assert r2.returncode == 0, r2.stderr
    w1, w2 = weights(one), weights(two)
    assert w1.keys() == w2.keys()
    for k in w1:  # same global minibatches, same adversarial examples, gradients averaged by DDP
        # DDP averages the two shards' gradients in another order than one process sums them: float
        # rounding, which grows over the SGD steps (seen on the class-balanced order: 1.7e-5 and 5.6e-5
        # on one weight of a layer; a wrong shard or step would differ by ~1e-2 everywhere)
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=2e-4)
    meta = read_metadata(two)
    assert meta["train_args"]["world_size"] == 2 and meta["step"] == 64 and meta["train_args"]["examples"] == 2048


def eval_args(out: Path) -> list[str]:
    return ["eval", "--model", "mnist_cnn_standard", "--attack", "fgsm", "--attack", "step_ll",
            "--eps", "0.1", "--eps", "0.3", "--limit", "200", "--batch-size", "50", "--no-progress", "--no-checks",
            "--output", str(out)]


def test_two_process_eval_equals_one_process(tmp_path):
    one, two, run = tmp_path / "one.json", tmp_path / "two.json", tmp_path / "torchrun.json"
    r1 = run_cli(*eval_args(one), env=ONE_THREAD)
    assert r1.returncode == 0, r1.stderr
    r2 = run_cli(*eval_args(two), "--devices", "2", env=ONE_THREAD)
    assert r2.returncode == 0, r2.stderr
    r3 = run_process([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                      "--master-port", str(free_port()), "-m", "advframe", *eval_args(run)], env=ONE_THREAD)
    assert r3.returncode == 0, r3.stderr
    d1 = json.loads(one.read_text())
    for other in (two, run):
        d = json.loads(other.read_text())
        assert d["processes"] == 2 and d["examples"] == d1["examples"] == 200
        assert d["clean"] == d1["clean"]
        keys = ("attack", "eps", "top1", "top5", "success_rate", "label_leaks", "max_perturbation", "violations")
        assert [{k: r[k] for k in keys} for r in d["runs"]] == [{k: r[k] for k in keys} for r in d1["runs"]]
    assert d1["runs"][0]["label_leaks"] is not None  # fgsm reads the label: leaks measured


def test_resume_after_kill_9_gives_the_uninterrupted_weights(tmp_path):
    ref, ck = tmp_path / "ref.safetensors", tmp_path / "ck.safetensors"
    args = train_args(ref)[:-3]  # without --out and --no-progress
    args[args.index("--epochs") + 1] = "2"
    r = run_cli(*args, "--out", str(ref), "--no-progress", env=ONE_THREAD)
    assert r.returncode == 0, r.stderr
    proc = subprocess.Popen([console_script(), *args, "--out", str(ck), "--no-progress", "--checkpoint-every", "20"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **ONE_THREAD})
    deadline = time.monotonic() + 120
    while not ck.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "training ended before the first checkpoint: make the run longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = read_metadata(ck)["step"]
    assert 0 < killed_at < 128  # mid-run: two epochs of 64 steps
    r = run_cli(*args, "--out", str(ck), "--no-progress", "--checkpoint-every", "20", "--resume", env=ONE_THREAD)
    assert r.returncode == 0, r.stderr
    assert read_metadata(ck)["step"] == 128
    w_ref, w_ck = weights(ref), weights(ck)
    assert w_ref.keys() == w_ck.keys()
    assert all(torch.equal(w_ref[k], w_ck[k]) for k in w_ref)


def test_advnet_trains_and_resumes_on_two_processes(tmp_path):
    """advnet on 2 gloo processes: the generator's gradients and v are all-reduced (G's batch-norm
    statistics stay per rank, so no equality with 1 process is claimed); the run resumes and its
    generator loads as an attack."""
    from advframe_advnet.attack import load_generator

    out = tmp_path / "advnet.safetensors"
    args = ["train", "--model", "mnist_cnn", "--model-param", "width=0.5", "--dataset", "mnist5k",
            "--defense", "advnet", "--param", "width=2", "--limit", "200", "--batch-size", "100", "--lr", "0.01", "--seed", "1",
            "--out", str(out), "--no-progress", "--devices", "2"]
    r = run_cli(*args, "--epochs", "1", env=ONE_THREAD)
    assert r.returncode == 0, r.stderr
    meta = read_metadata(out)
    assert meta["train_args"]["world_size"] == 2 and meta["step"] == 2
    r = run_cli(*args, "--epochs", "2", "--resume", env=ONE_THREAD)
    assert r.returncode == 0, r.stderr
    tensors, meta = load_checkpoint(out)
    assert meta["step"] == 4 and len(meta["history"]) == 2
    assert all(torch.isfinite(v).all() for k, v in tensors.items() if k.startswith(("model.", "defense.generator.")))
    gen = load_generator(out)
    assert gen.kind == "g1" and gen.width == 2
