"""Time the iterative attacks of advframe_gradient against bare PyTorch loops.

For each attack (iter_basic, iter_ll, pgd, mim) on a small MNIST-shaped CNN
(conv-relu-pool x2, fc; batch 256 of 1x28x28) the script times the attack and a bare
loop that does the same number of forward+backward passes with ``torch.autograd.grad``
and the same sign / momentum / clip operations, takes the best of N repetitions of
each (interleaved), prints a table with the ratio attack / bare and writes
``benchmarks/results/iterative.json``. Both wall-clock and process CPU time are
recorded: on a shared, loaded machine the CPU-time ratio (one thread) is the steadier one.

Usage: ``python benchmarks/bench_iterative.py [--repeats 3] [--threads 1] [--batch 256]``
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

import advframe
from advframe.threat import ThreatModel
from advframe_gradient._ops import kurakin_steps

EPS = 0.1
LO, HI = 0.0, 1.0


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
    ).eval()


def grad_ce(net: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().requires_grad_(True)
    out = net(x)
    (g,) = torch.autograd.grad(F.cross_entropy(out, labels, reduction="none").sum(), x)
    return g, out


def clip(x_adv: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    return torch.min(torch.max(x_adv, lower), upper).clamp(LO, HI)


def bare_iter_basic(net, x, y, steps):
    alpha, lower, upper = (HI - LO) / 255, x - EPS, x + EPS
    xa = x
    for _ in range(steps):
        g, _ = grad_ce(net, xa, y)
        xa = clip(xa + alpha * g.sign(), lower, upper)
    return xa


def bare_iter_ll(net, x, y, steps):
    alpha, lower, upper = (HI - LO) / 255, x - EPS, x + EPS
    xa, ll = x, None
    for _ in range(steps):
        xg = xa.detach().requires_grad_(True)
        out = net(xg)
        if ll is None:
            ll = out.detach().argmin(dim=1)
        (g,) = torch.autograd.grad(F.cross_entropy(out, ll, reduction="none").sum(), xg)
        xa = clip(xa - alpha * g.sign(), lower, upper)
    return xa


def bare_pgd(net, x, y, steps):
    step, lower, upper = 2.5 * EPS / steps, x - EPS, x + EPS
    xa = clip(x + (torch.rand_like(x) * 2 - 1) * EPS, lower, upper)
    for _ in range(steps):
        g, _ = grad_ce(net, xa, y)
        xa = clip(xa + step * g.sign(), lower, upper)
    return xa


def bare_mim(net, x, y, steps):
    step, lower, upper = EPS / steps, x - EPS, x + EPS
    xa, m = x, torch.zeros_like(x)
    for _ in range(steps):
        g, _ = grad_ce(net, xa, y)
        m = m + g / g.abs().sum(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
        xa = clip(xa + step * m.sign(), lower, upper)
    return xa


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """``(wall seconds, process CPU seconds)`` of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "iterative.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    net = small_cnn()
    model = advframe.as_model(net)
    for p in net.parameters():
        p.requires_grad_(False)  # both sides: input gradients only
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (args.batch,), generator=g)
    threat = ThreatModel("linf", EPS, (LO, HI))
    n_kurakin = kurakin_steps(EPS, (LO, HI))
    cases = [
        # fixed steps: the bare loops spend every step on every example (early exit: bench_early_exit.py)
        ("iter_basic", advframe.get_attack("iter_basic", early_exit=False), bare_iter_basic, n_kurakin),
        ("iter_ll", advframe.get_attack("iter_ll", early_exit=False), bare_iter_ll, n_kurakin),
        ("pgd", advframe.get_attack("pgd", steps=40, early_exit=False), bare_pgd, 40),
        ("mim", advframe.get_attack("mim", steps=10, early_exit=False), bare_mim, 10),
    ]
    rows = []
    for name, attack, bare, steps in cases:
        attack(model, x, y, threat)  # warm-up both
        bare(net, x, y, steps)
        attack.reset_counter()
        t_attack, t_bare = [], []
        for _ in range(args.repeats):  # interleaved so drifts hit both sides alike
            t_attack.append(timed(lambda: attack(model, x, y, threat)))
            t_bare.append(timed(lambda: bare(net, x, y, steps)))
        evals = attack.gradient_evaluations // args.repeats
        wall_a, wall_b = min(t[0] for t in t_attack), min(t[0] for t in t_bare)
        cpu_a, cpu_b = min(t[1] for t in t_attack), min(t[1] for t in t_bare)
        rows.append({"attack": name, "steps": steps, "gradient_evaluations": evals,
                     "attack_seconds": wall_a, "bare_seconds": wall_b, "ratio": wall_a / wall_b,
                     "attack_cpu_seconds": cpu_a, "bare_cpu_seconds": cpu_b, "cpu_ratio": cpu_a / cpu_b})
        print(f"done {name}", flush=True)

    print(f"{'attack':<11} {'steps':>5} {'grads':>5} {'attack s':>9} {'bare s':>9} {'ratio':>6} "
          f"{'attack cpu':>10} {'bare cpu':>9} {'cpu ratio':>9}")
    for r in rows:
        print(f"{r['attack']:<11} {r['steps']:>5} {r['gradient_evaluations']:>5} {r['attack_seconds']:>9.4f} "
              f"{r['bare_seconds']:>9.4f} {r['ratio']:>6.3f} {r['attack_cpu_seconds']:>10.4f} "
              f"{r['bare_cpu_seconds']:>9.4f} {r['cpu_ratio']:>9.3f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    doc = {"schema": "advframe.bench.iterative/1", "eps": EPS, "bounds": [LO, HI], "batch": args.batch,
           "input_shape": [1, 28, 28], "repeats": args.repeats, "threads": args.threads,
           "statistic": "best of repeats; wall (perf_counter) and process CPU time (process_time)", "torch": torch.__version__, "python": platform.python_version(),
           "machine": platform.machine(), "device": "cpu", "results": rows}
    args.output.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
