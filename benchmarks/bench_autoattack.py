"""Time advframe's worst-case ``autoattack`` suite against torchattacks' AutoAttack, in one run.

Both sides attack the shipped ``mnist_cnn_standard`` on the same digits (the
class-balanced first ``--examples`` of mnist5k, test split), linf, at each ``--eps``, in
batches of ``--batch``, with one torch thread. Repetitions are interleaved (the order
of the sides alternates from one repetition to the next) and the best wall time of each
side is kept.

The sides:

* ``advframe``: ``advframe.evaluate(..., worst_case=True)`` over the ``autoattack`` suite
  as a plugin registered it (what ``advframe eval --suite autoattack`` runs): apgd_ce,
  apgd_t, fab_t, square, each on the examples still robust. The wall time covers the
  whole evaluation (clean pass, audit of every adversarial batch).
* ``torchattacks_matched`` (the like-for-like side): torchattacks 3.5.1's ``MultiAttack`` of APGD (ce), APGDT,
  FAB (multi-targeted) and Square, set to AutoAttack's standard budget (Croce & Hein
  2020): 100 iterations, 1 restart, 9 target classes, 5,000 queries, seed 0.
  ``MultiAttack`` also runs each attack only on the points still robust.
* ``torchattacks_autoattack``: ``torchattacks.AutoAttack(model, norm='Linf', eps=eps,
  version='standard', n_classes=10, seed=0)`` as shipped. It leaves APGD, APGDT and FAB
  at torchattacks' default of **10** iterations (not AutoAttack's 100), so it does about
  a tenth of the gradient work; it is timed for reference, not as the like-for-like side.

Every side runs on the same model wrapped in a counter that adds, per forward call, the
number of rows (forward passes per example) and, through a hook on the input, the rows
whose input gradient is taken (backward passes per example). advframe's own counts (the
``worst_case`` entry's ``gradient_evaluations`` and ``forward_queries`` per example,
``attacked`` and ``broke`` per attack) are recorded beside them, and for torchattacks
the examples each member attacked, its seconds and its passes. The details kept for a
side are those of its fastest repetition.

torchattacks is not a dependency of advframe: run this in a virtualenv that has both
(see ``benchmarks/autoattack_crosscheck.py``), e.g.::

    OMP_NUM_THREADS=1 PYTHONPATH=.:plugins /work/venv-aa-ta/bin/python \\
        benchmarks/bench_autoattack.py --examples 200 --eps 0.3 --eps 0.1 --repeats 2

Writes ``benchmarks/results/autoattack.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import advframe
from advframe import plugins
from advframe.model import Classifier

#: AutoAttack's budget per example that survives every attack of the standard suite:
#: apgd_ce 100 + apgd_t 9 x 100 + fab_t 9 x 100 forward+backward passes; square 5,000 forwards.
BUDGET = {"forward_backward": 100 + 9 * 100 + 9 * 100, "forwards": 5000}


class Counted(Classifier):
    """The model, counting forward rows and input-gradient rows (cross-entropy, arg-max)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.forwards = 0
        self.backwards = 0

    def reset(self) -> None:
        self.forwards = self.backwards = 0

    def _count_backward(self, grad: torch.Tensor) -> None:
        self.backwards += int(grad.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards += int(x.shape[0])
        if torch.is_grad_enabled() and x.requires_grad:
            x.register_hook(self._count_backward)
        return self.net(x)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + batch]).argmax(1) for i in range(0, len(y), batch)])
    return float((pred == y).float().mean())


def suite(name: str) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The attack names and parameters of a registered suite."""
    members = plugins.registry().get("suites", name).factory.attacks
    return [a for a, _ in members], {a: dict(p) for a, p in members if p}


def run_advframe(model: Counted, x: torch.Tensor, y: torch.Tensor, eps: float, batch: int, seed: int
                 ) -> dict[str, Any]:
    names, params = suite("autoattack")
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    result = advframe.evaluate(model, (x, y), attacks=names, eps=[eps], params=params, batch_size=batch,
                               seed=seed, worst_case=True)
    seconds = time.perf_counter() - t0
    doc = result.to_dict()
    (entry,) = doc["worst_case"]
    if entry["violations"]:
        raise SystemExit(f"advframe: {entry['violations']} examples left the threat model")
    return {"seconds": seconds, "top1": entry["top1"], "clean_top1": entry["clean_top1"],
            "attacked": entry["attacked"], "broke": entry["broke"],
            "gradient_evaluations_per_example": entry["gradient_evaluations"],
            "forward_queries_per_example": entry["forward_queries"], "suite_seconds": entry["seconds"],
            "per_attack": {r["attack"]: {"attacked": entry["attacked"][r["attack"]], "broke": r["broke"],
                                         "seconds": r["seconds"],
                                         "gradient_evaluations_per_example": r["gradient_evaluations"],
                                         "forward_queries_per_example": r["forward_queries"]}
                           for r in doc["runs"]}}


def matched(model: nn.Module, eps: float, seed: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    import torchattacks

    return torchattacks.MultiAttack([
        torchattacks.APGD(model, norm="Linf", eps=eps, steps=100, n_restarts=1, loss="ce", seed=seed),
        torchattacks.APGDT(model, norm="Linf", eps=eps, steps=100, n_restarts=1, n_classes=10, seed=seed),
        torchattacks.FAB(model, norm="Linf", eps=eps, steps=100, n_restarts=1, multi_targeted=True, n_classes=10,
                         seed=seed),
        torchattacks.Square(model, norm="Linf", eps=eps, n_queries=5000, n_restarts=1, p_init=0.8, seed=seed),
    ])


def shipped(model: nn.Module, eps: float, seed: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    import torchattacks

    return torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=10, seed=seed)


def instrument(attack: Any, model: Counted, n: int) -> dict[str, dict[str, float]]:
    """Per member of a torchattacks ensemble: examples attacked, seconds, passes per example."""
    members = getattr(attack, "attacks", None) or attack._autoattack.attacks
    stats: dict[str, dict[str, float]] = {}
    for member in members:
        label = type(member).__name__
        stats[label] = {"attacked": 0, "seconds": 0.0, "forwards_per_example": 0.0, "backwards_per_example": 0.0}

        def timed(images: torch.Tensor, labels: torch.Tensor, _forward: Any = member.forward,
                  _s: dict[str, float] = stats[label]) -> torch.Tensor:
            f0, b0, t0 = model.forwards, model.backwards, time.perf_counter()
            out = _forward(images, labels)
            _s["seconds"] += time.perf_counter() - t0
            _s["attacked"] += int(labels.shape[0])
            _s["forwards_per_example"] += (model.forwards - f0) / n
            _s["backwards_per_example"] += (model.backwards - b0) / n
            return out

        member.forward = timed
    return stats


def run_torchattacks(build: Callable[..., Any], model: Counted, x: torch.Tensor, y: torch.Tensor, eps: float,
                     batch: int, seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    attack = build(model, eps, seed)
    per_attack = instrument(attack, model, len(y))
    x_adv = torch.cat([attack(x[i:i + batch], y[i:i + batch]) for i in range(0, len(y), batch)]).detach()
    seconds = time.perf_counter() - t0
    # torchattacks has no audit: check the linf ball and the box here
    if float((x_adv - x).abs().amax()) > eps + 1e-5 or x_adv.min() < -1e-6 or x_adv.max() > 1 + 1e-6:
        raise SystemExit(f"torchattacks ({build.__name__}): a result leaves the threat model")
    return {"seconds": seconds, "x_adv": x_adv, "per_attack": per_attack}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200, help="first N digits of mnist5k test (class-balanced)")
    parser.add_argument("--eps", type=float, action="append", help="linf radius; repeatable (default 0.3, 0.1)")
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-shipped", action="store_true", help="skip torchattacks.AutoAttack as shipped")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "autoattack.json"))
    args = parser.parse_args(argv)
    try:
        import torchattacks
    except ImportError:
        print("torchattacks is not installed: see this script's docstring", file=sys.stderr)
        return 2
    grid = args.eps or [0.3, 0.1]
    torch.set_num_threads(args.threads)
    model = Counted(advframe.load_model("mnist_cnn_standard")).eval()
    data = advframe.load_dataset("mnist5k", split="test")
    x, y = data.x[:args.examples].clone(), data.y[:args.examples].clone()
    clean = accuracy(model, x, y, args.batch)
    sides: dict[str, Callable[..., dict[str, Any]]] = {
        "advframe": lambda eps: run_advframe(model, x, y, eps, args.batch, args.seed),
        "torchattacks_matched": lambda eps: run_torchattacks(matched, model, x, y, eps, args.batch, args.seed),
    }
    if not args.no_shipped:
        sides["torchattacks_autoattack"] = lambda eps: run_torchattacks(shipped, model, x, y, eps, args.batch,
                                                                        args.seed)
    load = os.getloadavg()
    print(f"mnist_cnn_standard, mnist5k test[:{args.examples}], clean {clean:.4f}, batch {args.batch}, "
          f"{args.threads} thread(s), load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    rows = []
    for eps in grid:
        times: dict[str, list[float]] = {s: [] for s in sides}
        out: dict[str, dict[str, Any]] = {}
        for rep in range(args.repeats):
            order = list(sides) if rep % 2 == 0 else list(reversed(sides))
            for side in order:
                model.reset()
                res = sides[side](eps)
                res["forwards_per_example"] = model.forwards / args.examples
                res["backwards_per_example"] = model.backwards / args.examples
                if "x_adv" in res:
                    res["top1"] = accuracy(model.net, res.pop("x_adv"), y, args.batch)
                times[side].append(res["seconds"])
                if side not in out or res["seconds"] < out[side]["seconds"]:
                    out[side] = res  # the details of the fastest repetition
                print(f"eps {eps:g} rep {rep + 1} {side:<24} {res['seconds']:8.1f} s  top1 {res['top1']:.4f}  "
                      f"fwd/ex {res['forwards_per_example']:8.1f}  bwd/ex {res['backwards_per_example']:7.1f}",
                      flush=True)
        for side in sides:
            out[side]["all_seconds"] = times[side]
        best = {s: out[s]["seconds"] for s in sides}
        rows.append({"eps": eps, "sides": out,
                     "ratio_advframe_over_matched": best["advframe"] / best["torchattacks_matched"],
                     **({"ratio_advframe_over_shipped": best["advframe"] / best["torchattacks_autoattack"]}
                        if "torchattacks_autoattack" in best else {})})
        print(f"eps {eps:g}: advframe {best['advframe']:.1f} s, torchattacks matched "
              f"{best['torchattacks_matched']:.1f} s, ratio {rows[-1]['ratio_advframe_over_matched']:.3f}", flush=True)
    doc = {"model": "mnist_cnn_standard", "dataset": "mnist5k", "split": "test", "examples": args.examples,
           "norm": "linf", "batch": args.batch, "threads": args.threads, "repeats": args.repeats,
           "seed": args.seed, "clean": clean, "budget_per_surviving_example": BUDGET,
           "torch": torch.__version__, "torchattacks": torchattacks.__version__,
           "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                       "load_average_at_start": list(load), "load_average_at_end": list(os.getloadavg())},
           "command": "OMP_NUM_THREADS=1 python benchmarks/bench_autoattack.py " + " ".join(argv or sys.argv[1:]),
           "results": rows}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
