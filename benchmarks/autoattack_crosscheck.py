"""Cross-check advframe's AutoAttack attacks against an independent implementation.

Runs ``apgd_ce``, ``apgd_t`` and ``square`` of advframe and ``APGD`` (loss ce),
``APGDT`` and ``Square`` of torchattacks 3.5.1 on the shipped ``mnist_cnn_standard``
model and the first ``--n`` digits of ``mnist5k`` (test split; every prefix of it is
class-balanced), linf, and prints the robust accuracies side by side with the seconds
each took; writes ``benchmarks/results/autoattack_crosscheck.json``. Both sides use the AutoAttack
standard settings (100 iterations, 1 restart, 9 target classes, Square p_init 0.8);
Square's query budget is ``--square-queries`` on both sides.

torchattacks is not a dependency of advframe: run this in a separate virtualenv::

    python3 -m venv /tmp/venv-ta && . /tmp/venv-ta/bin/activate
    pip install torch==2.13.0 && pip install --no-deps torchattacks==3.5.1 scipy
    pip install -e .        # advframe itself
    python benchmarks/autoattack_crosscheck.py --n 200 --eps 0.1 --square-queries 1000

(torchattacks imports scipy but not torchvision; ``--no-deps`` keeps pip from pulling
another torch.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import advframe


def robust_accuracy(model: torch.nn.Module, x_adv: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    with torch.no_grad():
        pred = torch.cat([model.predict(model(x_adv[i:i + batch])) for i in range(0, len(y), batch)])
    return float((pred == y).float().mean())


def run_advframe(name: str, params: dict, model, x, y, threat, batch: int, seed: int) -> tuple[torch.Tensor, float]:
    attack = advframe.get_attack(name, **params)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    parts = []
    for i in range(0, len(y), batch):
        x_adv = attack(model, x[i:i + batch], y[i:i + batch], threat)
        report = threat.audit(x_adv, x[i:i + batch])
        if not report.ok:
            raise SystemExit(f"advframe {name}: {report.violations} examples leave the threat model")
        parts.append(x_adv)
    return torch.cat(parts), time.perf_counter() - t0


def run_torchattacks(attack, x, y, batch: int, eps: float) -> tuple[torch.Tensor, float]:
    t0 = time.perf_counter()
    parts = [attack(x[i:i + batch], y[i:i + batch]) for i in range(0, len(y), batch)]
    x_adv = torch.cat(parts).detach()
    # torchattacks has no audit: check the linf ball and the box here
    excess = float(((x_adv - x).abs().amax() - eps))
    if excess > 1e-5 or x_adv.min() < -1e-6 or x_adv.max() > 1 + 1e-6:
        raise SystemExit(f"torchattacks {attack.__class__.__name__}: result leaves the threat model")
    return x_adv, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="digits of mnist5k (test split)")
    parser.add_argument("--eps", type=float, default=0.1, help="linf radius")
    parser.add_argument("--square-queries", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 is fastest on a shared, loaded machine)")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "autoattack_crosscheck.json"))
    args = parser.parse_args(argv)
    try:
        import torchattacks
    except ImportError:
        print("torchattacks is not installed: see this script's docstring", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    model = advframe.load_model("mnist_cnn_standard").eval()
    data = advframe.load_dataset("mnist5k", split="test")
    x, y = data.x[:args.n].clone(), data.y[:args.n].clone()
    threat = advframe.ThreatModel(norm="linf", eps=args.eps, bounds=data.bounds)
    clean = robust_accuracy(model, x, y, args.batch)
    pairs = [
        ("apgd_ce", {"seed": args.seed}, torchattacks.APGD(model, norm="Linf", eps=args.eps, steps=100, n_restarts=1,
                                                           loss="ce", seed=args.seed)),
        ("apgd_t", {"seed": args.seed}, torchattacks.APGDT(model, norm="Linf", eps=args.eps, steps=100,
                                                           n_restarts=1, n_classes=10, seed=args.seed)),
        ("square", {"queries": args.square_queries, "seed": args.seed},
         torchattacks.Square(model, norm="Linf", eps=args.eps, n_queries=args.square_queries, n_restarts=1,
                             p_init=0.8, seed=args.seed)),
    ]
    rows = []
    print(f"mnist_cnn_standard, mnist5k test[:{args.n}], linf eps {args.eps:g}, clean accuracy {clean:.4f}")
    print(f"{'attack':<10}{'advframe':>10}{'s':>8}{'torchattacks':>14}{'s':>8}{'diff':>8}")
    for name, params, ta in pairs:
        adv_a, sec_a = run_advframe(name, params, model, x, y, threat, args.batch, args.seed)
        adv_t, sec_t = run_torchattacks(ta, x, y, args.batch, args.eps)
        acc_a, acc_t = robust_accuracy(model, adv_a, y, args.batch), robust_accuracy(model, adv_t, y, args.batch)
        rows.append({"attack": name, "params": params, "advframe": acc_a, "advframe_seconds": sec_a,
                     "torchattacks": acc_t, "torchattacks_seconds": sec_t,
                     "torchattacks_class": type(ta).__name__})
        print(f"{name:<10}{acc_a:>10.4f}{sec_a:>8.1f}{acc_t:>14.4f}{sec_t:>8.1f}{acc_a - acc_t:>+8.4f}", flush=True)
    doc = {"model": "mnist_cnn_standard", "dataset": "mnist5k", "split": "test", "examples": args.n,
           "norm": "linf", "eps": args.eps, "clean": clean, "torch": torch.__version__,
           "torchattacks": torchattacks.__version__, "threads": args.threads, "runs": rows}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
