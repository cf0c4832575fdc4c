"""kill -9 at random moments of 'advframe train' and 'advframe eval', then --resume.

Each trial runs the real console script, kills its process group with SIGKILL after a
seeded random delay counted from the moment its work began (the first checkpoint or
partial state on disk), resumes with ``--resume``, and requires:

* the checkpoint tensors and metadata (train) or the results document without its
  ``seconds`` timings (eval) equal those of an uninterrupted run, bit for bit;
* no temporary file (``*.advframe-tmp``, ``.partial``, ``.partial.kept``) is left.

One eval trial kills during the checks phase, after every attack batch is on disk: the
resume must not redo any attack batch.

The uninterrupted runs and the resumes run in this process through
:func:`advframe.cli.main` on one thread (the same numbers as the console script with
``OMP_NUM_THREADS=1``), so that only the killed runs pay a process start.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from advframe.checkpoint import load_checkpoint, read_metadata

from tests.helpers import console_script

ONE_THREAD = {"OMP_NUM_THREADS": "1"}
TRAIN = ["train", "--model", "mnist_cnn", "--model-param", "width=0.25", "--epochs", "2", "--batch-size", "500",
         "--checkpoint-every", "1", "--seed", "3", "--no-progress", "--device", "cpu"]  # 16 steps, a write each
TRAIN_STEPS = 16
EVAL = ["eval", "--model", "mnist_cnn_standard", "--attack", "fgsm", "--attack", "pgd", "--param", "pgd.steps=5",
        "--eps", "0.1", "--eps", "0.2", "--limit", "40", "--batch-size", "10", "--no-progress", "--device", "cpu"]
EVAL_BATCHES = [0, 10, 20, 30]


def in_process(args: list[str]) -> tuple[int, float]:
    """``advframe ARGS`` in this process on one thread: (exit code, seconds)."""
    from advframe.cli import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.monotonic()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        torch.set_num_threads(threads)
    return code, time.monotonic() - start


def kill_after(args: list[str], started: Callable[[], bool], delay: float, timeout: float = 240) -> int:
    """Run the console script; once ``started()`` holds, wait ``delay`` seconds and kill -9 its
    process group. Returns its exit code (-9 when killed, 0 when it finished first)."""
    proc = subprocess.Popen([console_script(), *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, **ONE_THREAD}, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and not started():
            assert time.monotonic() < deadline, "the run never started its work"
            time.sleep(0.01)
        end = time.monotonic() + delay
        while proc.poll() is None and time.monotonic() < end:
            time.sleep(0.005)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode in (0, -signal.SIGKILL), err
    return proc.returncode


def leftovers(folder: Path, keep: str) -> list[str]:
    """Files in ``folder`` other than ``keep`` (temporary files, partial states)."""
    return sorted(p.name for p in folder.iterdir() if p.name != keep)


def without_timings(doc: Any) -> Any:
    """The document without its wall-clock ``seconds`` entries."""
    if isinstance(doc, dict):
        return {k: without_timings(v) for k, v in doc.items() if k != "seconds"}
    if isinstance(doc, list):
        return [without_timings(v) for v in doc]
    return doc


def saved_state(out: Path) -> dict[str, Any] | None:
    """The eval's partial state (the engine's file, else the copy kept during the checks), if readable."""
    for p in (Path(f"{out}.partial"), Path(f"{out}.partial.kept")):
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            continue
    return None


def test_train_killed_at_random_moments_resumes_bit_identical(tmp_path):
    ref = tmp_path / "ref" / "ck.safetensors"
    ref.parent.mkdir()
    code, work = in_process([*TRAIN, "--out", ref])
    assert code == 0
    ref_tensors, ref_meta = load_checkpoint(ref)
    rng = random.Random(20240514)
    killed_at = []
    for trial in range(2):
        folder = tmp_path / f"trial{trial}"
        folder.mkdir()
        ck = folder / "ck.safetensors"
        delay = 0.0 if trial == 0 else rng.uniform(0.0, 0.9 * work)  # trial 0: at the first checkpoint write
        code = kill_after([*TRAIN, "--out", ck], lambda: any(folder.iterdir()), delay)
        if code == -signal.SIGKILL:  # the step of the last checkpoint on disk (16: killed before exiting)
            killed_at.append(read_metadata(ck)["step"] if ck.exists() else 0)
        code, _ = in_process([*TRAIN, "--out", ck, "--resume"])
        assert code == 0
        tensors, meta = load_checkpoint(ck)
        assert tensors.keys() == ref_tensors.keys()
        assert [k for k in tensors if not torch.equal(tensors[k], ref_tensors[k])] == []
        assert meta == ref_meta
        assert leftovers(folder, ck.name) == []
    assert any(s < TRAIN_STEPS for s in killed_at), f"no kill landed before the last step: {killed_at}"


def test_eval_killed_at_random_moments_resumes_bit_identical(tmp_path):
    ref = tmp_path / "ref.json"
    code, work = in_process([*EVAL, "--no-checks", "--output", ref])
    assert code == 0
    expected = without_timings(json.loads(ref.read_text()))
    rng = random.Random(7)
    killed = 0
    for trial in range(2):
        folder = tmp_path / f"trial{trial}"
        folder.mkdir()
        out = folder / "r.json"
        code = kill_after([*EVAL, "--no-checks", "--output", out], lambda: any(folder.iterdir()),
                          rng.uniform(0.0, 0.9 * work))
        killed += code == -signal.SIGKILL and not out.exists()
        code, _ = in_process([*EVAL, "--no-checks", "--output", out, "--resume"])
        assert code == 0
        assert without_timings(json.loads(out.read_text())) == expected
        assert leftovers(folder, out.name) == []
    assert killed >= 1


def test_eval_killed_in_the_checks_phase_keeps_every_attack_batch(tmp_path, monkeypatch):
    import advframe.evaluation

    ref = tmp_path / "ref.json"
    code, _ = in_process([*EVAL, "--output", ref])
    assert code == 0
    expected = without_timings(json.loads(ref.read_text()))
    assert expected["checks"]  # the checks ran and are part of the document
    folder = tmp_path / "trial"
    folder.mkdir()
    out = folder / "r.json"
    kept = Path(f"{out}.partial.kept")

    def in_checks() -> bool:  # every batch saved and the copy put back: the engine returned
        state = saved_state(out)
        return state is not None and state["done"] == EVAL_BATCHES and not kept.exists()

    code = kill_after([*EVAL, "--output", out], in_checks, random.Random(3).uniform(0.0, 0.2))
    assert code == -signal.SIGKILL and not out.exists(), "the run ended before the kill: the checks were too quick"
    assert saved_state(out)["done"] == EVAL_BATCHES  # the attack work is on disk

    redone = []
    real = advframe.evaluation._Evaluation.batch

    def batch(self, start):  # type: ignore[no-untyped-def]
        redone.append(start)
        return real(self, start)

    monkeypatch.setattr(advframe.evaluation._Evaluation, "batch", batch)
    code, _ = in_process([*EVAL, "--output", out, "--resume"])
    assert code == 0
    assert redone == []  # no attack batch was run again
    assert without_timings(json.loads(out.read_text())) == expected
    assert leftovers(folder, out.name) == []
