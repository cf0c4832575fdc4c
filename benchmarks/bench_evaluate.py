"""Time ``advframe.evaluate`` against a bare PyTorch loop over the same batches, in one run.

The shipped model (``mnist_cnn_standard``) on the first N digits of the embedded test
split, PGD-40 with random start over the data set's eps grid. The bare loop does what
the evaluation must do, and nothing more: one clean forward pass per batch, then per
eps a uniform random start, 40 forward+backward input-gradient passes with sign steps
and projection, and one forward pass to classify the result. Repetitions are
interleaved (bare, advframe, advframe with checks, bare, ...) and the best of each is
compared, so background load hits both sides alike. The checks run after the
evaluation, as ``advframe eval`` does by default.

Usage: ``python benchmarks/bench_evaluate.py [--examples 500] [--repeats 3] [--threads 1]``
Writes ``benchmarks/results/evaluate.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

import advframe
from advframe.checks import run_checks

STEPS = 40


def bare_pgd(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = STEPS,
             amp: bool = False) -> torch.Tensor:
    """PGD from a uniform start: ``steps`` forward+backward passes, sign steps of 2.5 eps / steps, projection.

    ``amp``: the forward passes under bf16 autocast, the loss in float32 (as ``--amp`` runs them).
    """
    step = 2.5 * eps / steps
    cast = torch.autocast(x.device.type, dtype=torch.bfloat16) if amp else nullcontext()
    lower, upper = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    xa = torch.min(torch.max(x + (torch.rand_like(x) * 2 - 1) * eps, lower), upper)
    for _ in range(steps):
        xg = xa.detach().requires_grad_(True)
        with cast:
            logits = net(xg)
        (g,) = torch.autograd.grad(F.cross_entropy(logits.float(), y, reduction="none").sum(), xg)
        xa = torch.min(torch.max(xa + step * g.sign(), lower), upper)
    return xa


def bare_evaluation(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, grid: list[float],
                    batch: int, steps: int = STEPS) -> list[float]:
    """Top-1 under PGD (``steps``, 40 by default) per eps, batch by batch, as the evaluation computes it."""
    correct = [0] * len(grid)
    for s in range(0, len(y), batch):
        xb, yb = x[s:s + batch], y[s:s + batch]
        with torch.no_grad():
            net(xb)  # the clean pass
        for j, eps in enumerate(grid):
            xa = bare_pgd(net, xb, yb, eps, steps)
            with torch.no_grad():
                correct[j] += int((net(xa).argmax(1) == yb).sum())
    return [c / len(y) for c in correct]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "evaluate.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = advframe.load_model("mnist_cnn_standard")
    data = advframe.load_dataset("mnist5k", split="test")
    x, y = data.x[:args.examples], data.y[:args.examples]
    grid = list(data.default_eps)
    net = model.eval()

    def advframe_eval(checks: bool) -> list[float]:
        result = advframe.evaluate(model, (x, y), attacks=["pgd"], eps=grid, batch_size=args.batch,
                                   params={"steps": STEPS, "early_exit": False})  # the bare loop's passes
        if checks:
            run_checks(model, (x, y), result)
        return [r.top1 for r in result.runs]

    sides = {"bare": lambda: bare_evaluation(net, x, y, grid, args.batch),
             "advframe": lambda: advframe_eval(False),
             "advframe_checks": lambda: advframe_eval(True)}
    best = {k: float("inf") for k in sides}
    top1 = {}
    for _ in range(args.repeats):
        for name, fn in sides.items():
            t0 = time.perf_counter()
            top1[name] = fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    ratio = {k: best[k] / best["bare"] for k in sides}
    report = {"model": "mnist_cnn_standard", "examples": args.examples, "eps": grid, "attack": f"pgd-{STEPS}",
              "threads": args.threads, "repeats": args.repeats, "seconds_best": best, "ratio_to_bare": ratio,
              "top1": top1, "machine": platform.platform(), "torch": torch.__version__}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    for name in sides:
        print(f"{name:16s} best {best[name]:7.2f} s  ratio {ratio[name]:.3f}  top-1 "
              + " ".join(f"{t:.3f}" for t in top1[name]))


if __name__ == "__main__":
    main()
