"""Time one ``advnet`` training step (adversarial networks) against a bare PyTorch step doing the same passes.

A step of the defense, through the training loop's ``train_step``: 5 generator ascent
steps (G forward, D forward, backward to G, Adam step), then the classifier step with the
finite-difference HVP of §3.1 (G forward + D forward + backward to G for v = ∇_ψF, a G
forward at ψ + h·v, one D forward over the clean, adversarial and shifted examples,
backward to D, SGD step). The bare step writes the same passes directly with
``torch.autograd.grad``. Both run on D1 and G1 (k = 8), batch 64 of 1×28×28, in float32 on
the CPU; the script takes the best of N interleaved repetitions of each, prints the ratio
advframe / bare and writes ``benchmarks/results/advnet.json`` (wall-clock and process CPU).

Usage: ``python benchmarks/bench_advnet.py [--repeats 5] [--threads 1] [--batch 64]``
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from advframe.training import train_step
from advframe_advnet.classifiers import D1
from advframe_advnet.defense import AdversarialNetworks

EPS, GAMMA, LAM, G_STEPS, G_LR = 0.3, 0.01, 1.0, 5, 0.002
H = G_LR / 10


def bare_step(d, g, d_opt, g_opt, x, y):
    g_params = [p for p in g.parameters()]

    def adv_examples():
        return (x + EPS * g(x, y)).clamp(0.0, 1.0)

    d.eval()
    for _ in range(G_STEPS):
        loss = F.cross_entropy(d(adv_examples()), y)
        grads = torch.autograd.grad(LAM * loss, g_params)
        for p, gr in zip(g_params, grads):
            p.grad = -gr
        g_opt.step()
    g_opt.zero_grad(set_to_none=True)
    d.train()
    adv0 = adv_examples()
    v = torch.autograd.grad(LAM * F.cross_entropy(d(adv0), y), g_params)
    adv0 = adv0.detach()
    saved = [p.detach().clone() for p in g_params]
    with torch.no_grad():
        for p, vi in zip(g_params, v):
            p.add_(vi, alpha=H)
        adv1 = adv_examples()
        for p, s in zip(g_params, saved):
            p.copy_(s)
    d_opt.zero_grad(set_to_none=True)
    per = F.cross_entropy(d(torch.cat([x, adv0, adv1])), y.repeat(3), reduction="none").view(3, -1).mean(1)
    loss = per[0] + LAM * ((1 - GAMMA / H) * per[1] + (GAMMA / H) * per[2])
    loss.backward()
    d_opt.step()


def timed(fn) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "advnet.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x, y = torch.rand(args.batch, 1, 28, 28), torch.randint(0, 10, (args.batch,))

    d = D1()
    defense = AdversarialNetworks(width=8, eps=EPS, gamma=GAMMA, lam=LAM, g_steps=G_STEPS, g_lr=G_LR)
    defense.setup(d, None, {"seed": 0})
    defense._ensure(d, x)
    d_opt = torch.optim.SGD(d.parameters(), lr=0.01, momentum=0.9)
    bare_d, bare_g = copy.deepcopy(d), copy.deepcopy(defense.gen)
    bare_d_opt = torch.optim.SGD(bare_d.parameters(), lr=0.01, momentum=0.9)
    bare_g_opt = torch.optim.Adam(bare_g.parameters(), lr=G_LR, betas=(0.5, 0.999))

    def ours():
        train_step(d, defense, d_opt, x, y, 0)

    def bare():
        bare_step(bare_d, bare_g, bare_d_opt, bare_g_opt, x, y)

    ours(), bare()  # warm-up; both sides did the same arithmetic:
    for a, b in zip(list(d.parameters()) + list(defense.gen.parameters()),
                    list(bare_d.parameters()) + list(bare_g.parameters())):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    t_ours, t_bare = [], []
    for _ in range(args.repeats):
        t_ours.append(timed(ours))
        t_bare.append(timed(bare))
    wall_o, wall_b = min(t[0] for t in t_ours), min(t[0] for t in t_bare)
    cpu_o, cpu_b = min(t[1] for t in t_ours), min(t[1] for t in t_bare)
    row = {"advframe_seconds": wall_o, "bare_seconds": wall_b, "ratio": wall_o / wall_b,
           "advframe_cpu_seconds": cpu_o, "bare_cpu_seconds": cpu_b, "cpu_ratio": cpu_o / cpu_b}
    print(f"advnet step: advframe {wall_o:.4f} s, bare {wall_b:.4f} s, ratio {row['ratio']:.3f}; "
          f"cpu {cpu_o:.4f} / {cpu_b:.4f} s, ratio {row['cpu_ratio']:.3f}")
    doc = {"schema": "advframe.bench.advnet/1", "eps": EPS, "gamma": GAMMA, "g_steps": G_STEPS, "h": H,
           "classifier": "d1_cnn", "generator": "g1", "width": 8, "batch": args.batch, "repeats": args.repeats,
           "threads": args.threads, "statistic": "best of repeats; wall (perf_counter) and process CPU time",
           "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
           "device": "cpu", "results": [row]}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
