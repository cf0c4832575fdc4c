"""Early exit against the fixed-step run and torchattacks' PGD, in one interleaved run.

The shipped standard model (``mnist_cnn_standard``) and the mixed-batch model
(``mnist_cnn_mixed_step_ll``) on the 1,000 embedded test digits; pgd-40 (random start,
step 2.5·ε/40) at ε 0.1, 0.2 and 0.3, and iter_ll with Kurakin's schedule (1-pixel steps,
``min(ε + 4, 1.25ε)`` of them, ε in pixels) at the same ε. For every cell it runs the attack
with ``early_exit=True`` (the default), with ``early_exit=False`` (the paper-exact fixed
steps) and, for pgd, torchattacks 3.5.1's ``PGD`` with the same step, steps and random
start, each over the same batches of 250 with the same seeds, and reports:

* gradient passes per example (advframe books them per example; torchattacks and the
  fixed-step run spend ``steps`` on each);
* wall time (the best of ``--repeats`` interleaved repetitions: fixed, early, torchattacks,
  fixed, ...), and early exit's time as a fraction of the fixed-step time, beside its
  passes as a fraction of the fixed-step passes (the mean surviving fraction over steps);
* top-1, and the number of digits robust under early exit but broken by the fixed-step run
  (must be 0 but for the model's own batch-size numerics: see the loop's docstring).

torchattacks is not a dependency: run this in a virtualenv with it (see
``benchmarks/autoattack_crosscheck.py``); without it, its column is left out and said so.

Usage: ``python benchmarks/bench_early_exit.py [--repeats 2] [--threads 1] [--examples 1000]``
Writes ``benchmarks/results/early_exit.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import advframe
from advframe.threat import ThreatModel

MODELS = ("mnist_cnn_standard", "mnist_cnn_mixed_step_ll")
EPS = (0.1, 0.2, 0.3)
BATCH = 250
STEPS = 40


def run_advframe(name: str, params: dict[str, Any], model: Any, x: torch.Tensor, y: torch.Tensor,
                 eps: float) -> tuple[torch.Tensor, float]:
    """Per-example robustness and gradient passes per example, batch by batch, seeded per batch."""
    threat = ThreatModel("linf", eps, (0.0, 1.0))
    robust, passes = [], 0.0
    for s in range(0, len(y), BATCH):
        xb, yb = x[s:s + BATCH], y[s:s + BATCH]
        attack = advframe.get_attack(name, **params)
        torch.manual_seed(s)
        x_adv = attack(model, xb, yb, threat)
        passes += attack.booked(len(yb))[0] * len(yb)
        with torch.no_grad():
            robust.append(model(x_adv).argmax(1) == yb)
    return torch.cat(robust), passes / len(y)


def run_torchattacks(model: Any, x: torch.Tensor, y: torch.Tensor, eps: float) -> tuple[torch.Tensor, float]:
    """torchattacks' PGD with the same step, steps and random start, over the same batches."""
    import torchattacks

    attack = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / STEPS, steps=STEPS, random_start=True)
    robust = []
    for s in range(0, len(y), BATCH):
        xb, yb = x[s:s + BATCH], y[s:s + BATCH]
        torch.manual_seed(s)
        x_adv = attack(xb, yb)
        with torch.no_grad():
            robust.append(model(x_adv).argmax(1) == yb)
    return torch.cat(robust), float(STEPS)


def timed(fn: Callable[[], tuple[torch.Tensor, float]]) -> tuple[float, torch.Tensor, float]:
    t0 = time.perf_counter()
    robust, passes = fn()
    return time.perf_counter() - t0, robust, passes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "early_exit.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peer = importlib.util.find_spec("torchattacks") is not None
    data = advframe.load_dataset("mnist5k", "test").take(args.examples)
    x, y = data.x, data.y
    rows = []
    for model_name in MODELS:
        model = advframe.load_model(model_name)
        for attack in ("pgd", "iter_ll"):
            for eps in EPS:
                base = {"steps": STEPS} if attack == "pgd" else {}
                sides: dict[str, Callable[[], tuple[torch.Tensor, float]]] = {
                    "fixed": lambda: run_advframe(attack, {**base, "early_exit": False}, model, x, y, eps),
                    "early": lambda: run_advframe(attack, {**base, "early_exit": True}, model, x, y, eps),
                }
                if attack == "pgd" and peer:
                    sides["torchattacks"] = lambda: run_torchattacks(model, x, y, eps)
                best: dict[str, list[Any]] = {}
                for _ in range(args.repeats):
                    for side, fn in sides.items():
                        seconds, robust, passes = timed(fn)
                        if side not in best or seconds < best[side][0]:
                            best[side] = [seconds, robust, passes]
                row: dict[str, Any] = {"model": model_name, "attack": attack, "eps": eps}
                for side, (seconds, robust, passes) in best.items():
                    row[side] = {"seconds": round(seconds, 3), "passes_per_example": round(passes, 3),
                                 "top1": round(float(robust.float().mean()), 4)}
                fixed, early = best["fixed"], best["early"]
                row["time_ratio"] = round(early[0] / fixed[0], 3)
                row["pass_ratio"] = round(early[2] / fixed[2], 3) if fixed[2] else None
                row["robust_early_broken_fixed"] = int((early[1] & ~fixed[1]).sum())
                row["broken_early_robust_fixed"] = int((~early[1] & fixed[1]).sum())
                rows.append(row)
                print(json.dumps(row), flush=True)
    out = {"examples": args.examples, "batch": BATCH, "threads": args.threads, "repeats": args.repeats,
           "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
           "torchattacks": peer, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}" + ("" if peer else " (torchattacks not installed: its column is left out)"))


if __name__ == "__main__":
    main()
