"""Capacity sweep: accuracy ratio against the width factor ρ (Kurakin et al. 2017, §4.3 and Fig. 1).

For each ρ in {0.5, 1, 2} this script trains two ``mnist_cnn`` models on mnist5k through
the Python API, one standard and one adversarially trained (``mixed_batch``, Kurakin's
Algorithm 1 with step l.l. examples, if the advtrain plugin is installed), evaluates both
under step l.l., iter. l.l. and basic iter., and plots the accuracy ratio
(adversarial / clean top-1 accuracy) against ρ: left panel standard, right panel
adversarially trained, as in Kurakin's Fig. 1. It also writes one ``advframe.eval/1``
document per model, which ``advframe report`` reads.

Usage::

    python docs/examples/capacity_sweep.py --quick --out-dir /tmp/capacity
    advframe report /tmp/capacity/eval_*.json --plot /tmp/capacity/curves.png

``--quick`` trains 2 epochs and evaluates 200 test digits at eps 0.1 (a few minutes on a
laptop CPU); without it, 8 epochs, 1000 digits, eps 0.1 and 0.3. ``--widths`` and
``--defenses`` select part of the grid, so that it can be split over processes writing to
the same ``--out-dir``; every run re-plots all the documents found there.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import advframe
from advframe import plugins
from advframe.checkpoint import atomic_write_text

WIDTHS = (0.5, 1.0, 2.0)
ATTACKS = ("step_ll", "iter_ll", "iter_basic")


def defenses() -> list[tuple[str, dict[str, object]]]:
    """Standard training, and mixed-batch adversarial training when a plugin registers it."""
    out: list[tuple[str, dict[str, object]]] = [("standard", {})]
    if "mixed_batch" in plugins.registry().names("defenses"):
        out.append(("mixed_batch", {"preset": "mnist"}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs, 200 test digits, eps 0.1")
    parser.add_argument("--out-dir", type=Path, default=Path("capacity_sweep"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--widths", type=float, nargs="+", default=list(WIDTHS), help="the ρ values to train")
    parser.add_argument("--defenses", nargs="+", default=None,
                        help="standard and/or mixed_batch (default: both, when available)")
    args = parser.parse_args()
    epochs, limit, grid = (2, 200, [0.1]) if args.quick else (8, 1000, [0.1, 0.3])
    args.out_dir.mkdir(parents=True, exist_ok=True)
    test = advframe.load_dataset("mnist5k", split="test")
    train = advframe.load_dataset("mnist5k", split="train")
    chosen = [(d, p) for d, p in defenses() if args.defenses is None or d in args.defenses]
    for defense, params in chosen:
        for width in args.widths:
            t0 = time.perf_counter()
            name = f"mnist_cnn_w{width:g}_{defense}"
            result = advframe.train("mnist_cnn", train, model_config={"width": width}, defense=defense,
                                    defense_params=params, epochs=epochs, seed=args.seed,
                                    out=args.out_dir / f"{name}.safetensors", dataset_name="mnist5k")
            ev = advframe.evaluate(result.model, test, attacks=list(ATTACKS), eps=grid, limit=limit,
                                   seed=args.seed, label_leaks=False, model_name=name)
            doc = ev.to_dict()
            doc["width"], doc["defense"] = width, defense
            atomic_write_text(args.out_dir / f"eval_{name}.json", json.dumps(doc, indent=2))
            print(f"{name}: clean {doc['clean']['top1']:.3f}, "
                  + ", ".join(f"{r['attack']}@{r['eps']:g} ratio {r['accuracy_ratio']:.3f}" for r in doc["runs"])
                  + f" ({time.perf_counter() - t0:.0f} s)", flush=True)
    rows = collect(args.out_dir)
    atomic_write_text(args.out_dir / "summary.json", json.dumps(rows, indent=2))
    plot(rows, args.out_dir / "accuracy_ratio_vs_width.png")
    print(f"wrote {args.out_dir / 'summary.json'} and {args.out_dir / 'accuracy_ratio_vs_width.png'}")


def collect(out_dir: Path) -> list[dict[str, object]]:
    """One row per run of every sweep document in ``out_dir`` (so that runs split over processes merge)."""
    rows = []
    for path in sorted(out_dir.glob("eval_mnist_cnn_w*.json")):
        doc = json.loads(path.read_text())
        for r in doc["runs"]:
            rows.append({"defense": doc["defense"], "width": doc["width"], "attack": r["attack"], "eps": r["eps"],
                         "clean": doc["clean"]["top1"], "top1": r["top1"], "ratio": r["accuracy_ratio"]})
    return rows


def plot(rows: list[dict[str, object]], path: Path) -> None:
    """Accuracy ratio against ρ, one panel per defense, one line per attack and eps (Kurakin Fig. 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(dict.fromkeys(str(r["defense"]) for r in rows), key=lambda d: d != "standard")  # standard left
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.8), squeeze=False)
    for ax, defense in zip(axes[0], names):
        keys = list(dict.fromkeys((r["attack"], r["eps"]) for r in rows if r["defense"] == defense))
        for attack, eps in keys:
            pts = sorted((r["width"], r["ratio"]) for r in rows
                         if r["defense"] == defense and r["attack"] == attack and r["eps"] == eps)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{attack}, eps={eps:g}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(WIDTHS), [f"{w:g}" for w in WIDTHS])
        ax.set_xlabel("width factor ρ")
        ax.set_ylabel("accuracy ratio (adversarial / clean)")
        ax.set_ylim(0, 1.05)
        ax.set_title(defense)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
