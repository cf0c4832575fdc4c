"""The data-size curve of docs/defenses-measured.md: robust accuracy against training-set size.

Robust generalisation needs more data than clean generalisation (Schmidt, Santurkar,
Tsipras, Talwar & Madry, *Adversarially Robust Generalization Requires More Data*,
NeurIPS 2018). This trains the recipe of ``mnist_cnn_robust`` on the first 1,000, 2,000
and 4,000 digits of the mnist5k training split (class-balanced prefixes, each with its
own 200-digit holdout) and evaluates each model with AutoAttack at ε 0.3 on the 1,000
test digits: the full suite, or with ``--fast`` its gradient attacks (apgd_ce, apgd_t).

Usage::

    python benchmarks/data_size_curve.py DIR            # trains and evaluates what DIR lacks
    python benchmarks/data_size_curve.py DIR --plot docs/img/data_size_curve.png [--fast]

Finished checkpoints and results documents in DIR are kept on a rerun.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

SIZES = (1000, 2000, 4000)
#: the recipe of mnist_cnn_robust (docs/zoo.md), less --limit and --out
RECIPE = ["--model", "mnist_cnn", "--model-param", "width=3", "--dataset", "mnist5k", "--defense", "pgd_at",
          "--augment", "shift", "--epochs", "60", "--seed", "0", "--device", "cpu", "--no-progress"]


def run(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True)
    return time.perf_counter() - start


def measure(folder: Path, suite: str) -> dict[int, dict[str, float]]:
    rows: dict[int, dict[str, float]] = {}
    for n in SIZES:
        ckpt, doc, secs = folder / f"size_{n}.safetensors", folder / f"size_{n}.aa.json", folder / f"size_{n}.train.json"
        if not secs.is_file():
            seconds = run(["advframe", "train", *RECIPE, "--limit", str(n), "--out", str(ckpt)])
            secs.write_text(json.dumps({"seconds": seconds}))
        if not doc.is_file():
            run(["advframe", "eval", "--model", str(ckpt), "--suite", suite, "--eps", "0.3", "--no-checks",
                 "--no-progress", "--output", str(doc)])
        result = json.loads(doc.read_text())
        rows[n] = {"clean": result["clean"]["top1"], "autoattack": result["worst_case"][0]["top1"],
                   "seconds": json.loads(secs.read_text())["seconds"]}
    return rows


def plot(rows: dict[int, dict[str, float]], path: Path, attack: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(rows)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(sizes, [100 * rows[n]["clean"] for n in sizes], "o-", label="clean")
    ax.plot(sizes, [100 * rows[n]["autoattack"] for n in sizes], "s-", label=f"{attack}, ε 0.3")
    ax.set_xscale("log")
    ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
    ax.minorticks_off()
    ax.set_xlabel("mnist5k training digits (200 of them held out)")
    ax.set_ylabel("accuracy on 1,000 test digits (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--fast", action="store_true", help="autoattack_fast instead of the full suite")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    rows = measure(args.folder, "autoattack_fast" if args.fast else "autoattack")
    print("| training digits | clean | AutoAttack ε 0.3 | training s |")
    print("| ---: | ---: | ---: | ---: |")
    for n, r in sorted(rows.items()):
        print(f"| {n:,} | {100 * r['clean']:.1f} | {100 * r['autoattack']:.1f} | {r['seconds']:.0f} |")
    if args.plot:
        plot(rows, args.plot, "AutoAttack (apgd_ce, apgd_t)" if args.fast else "AutoAttack")


if __name__ == "__main__":
    main()
