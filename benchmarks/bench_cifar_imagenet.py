"""CIFAR- and ImageNet-sized evaluation on CPU: advframe's overhead, and an image folder's memory.

Two measurements, each in one run:

* ``pgd``: PGD-10 at eps 8/255 on ``preact_resnet18`` (random weights, batch-norm statistics
  calibrated as training leaves them) with CIFAR-shaped inputs, batch 128.
  ``advframe.evaluate`` (checks off) against a bare PyTorch loop doing the same passes: one
  clean forward pass, a uniform random start, 10 forward+backward input-gradient passes with
  sign steps and projection, one forward pass to classify. Repetitions are interleaved
  (bare, advframe, bare, ...); the ratio reported is the median over the back-to-back pairs
  (on a host shared with other machines, single runs vary by up to 50 %), beside the ratio of
  the best runs.
* ``memory``: the peak resident memory of ``advframe eval`` (a subprocess) over an image
  folder of generated 256×256 JPEGs, centre-cropped to 224×224, at 500 and 2,000 images,
  with a small convolutional network so that the data pipeline, not the model, dominates.
  Streaming keeps it flat; reading the whole folder would add 3×224×224×4 bytes (0.6 MB)
  per image, 0.9 GB more at 2,000 than at 500. The sizes are run interleaved, twice each: the
  allocator moves a peak by tens of MB from one run to the next.

Usage: ``python benchmarks/bench_cifar_imagenet.py [--examples 128] [--repeats 9] [--memory-repeats 2] [--threads 2]``
Writes ``benchmarks/results/cifar_imagenet.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import advframe

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.bench_evaluate import bare_evaluation  # noqa: E402
from tests.formats import calibrate_batch_norm  # noqa: E402

STEPS, EPS, BATCH = 10, 8 / 255, 128


def pgd_overhead(examples: int, repeats: int) -> dict:
    """Best seconds of advframe.evaluate and of the bare loop, interleaved, and their ratio."""
    torch.manual_seed(0)
    net = advframe.build_model("preact_resnet18")
    calibrate_batch_norm(net)
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(examples, 3, 32, 32, generator=g), torch.randint(0, 10, (examples,), generator=g)
    times: dict[str, list[float]] = {"bare": [], "advframe": []}
    top1 = {}
    for _ in range(repeats):
        for side in ("bare", "advframe"):
            start = time.perf_counter()
            if side == "bare":
                top1[side] = bare_evaluation(net, x, y, [EPS], BATCH, STEPS)[0]
            else:
                result = advframe.evaluate(net, (x, y), attacks=["pgd"], eps=[EPS], batch_size=BATCH,
                                           params={"steps": STEPS, "early_exit": False})  # the bare loop's passes
                top1[side] = result.runs[0].top1
            times[side].append(time.perf_counter() - start)
    best = {k: min(v) for k, v in times.items()}
    pairs = sorted(a / b for a, b in zip(times["advframe"], times["bare"]))  # each pair ran back to back
    return {"model": "preact_resnet18", "examples": examples, "batch": BATCH, "steps": STEPS, "eps": EPS,
            "seconds": times, "best": best, "ratio_of_best": best["advframe"] / best["bare"],
            "pair_ratios": pairs, "ratio": pairs[len(pairs) // 2], "top1": top1}


def write_folder(root: Path, images: int, classes: int = 10) -> None:
    """``images`` 256×256 JPEGs in ``classes`` class folders."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(images):
        folder = root / f"class{i % classes:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size=(256, 256, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")


def peak_memory(folder: Path, limit: int) -> dict:
    """Peak resident memory (MB) and seconds of one ``advframe eval`` over the folder's first ``limit`` images."""
    cmd = [sys.executable, "-c", "from advframe.cli import main; main()", "eval", "--dataset", "imagefolder",
           "--data-dir", str(folder), "--arch", "benchmarks.tiny_imagenet_net:Net", "--untrained", "--attack",
           "fgsm", "--eps", "4/255", "--limit", str(limit), "--batch-size", "100", "--no-checks", "--no-progress"]
    script = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
              "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", script, *cmd], check=True, capture_output=True, text=True,
                         cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT))).stdout.split()
    return {"images": limit, "peak_rss_mb": int(out[0]) / 1024, "seconds": float(out[1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--memory-repeats", type=int, default=2)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cifar_imagenet.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    doc = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                       "torch": torch.__version__}}
    doc["pgd"] = pgd_overhead(args.examples, args.repeats)
    print(f"PGD-10, preact_resnet18, {args.examples} CIFAR-shaped inputs, batch {BATCH}: advframe "
          f"{doc['pgd']['best']['advframe']:.2f} s, bare loop {doc['pgd']['best']['bare']:.2f} s (best of "
          f"{args.repeats}); ratio {doc['pgd']['ratio']:.3f} (median of the back-to-back pairs "
          f"{', '.join(f'{r:.3f}' for r in doc['pgd']['pair_ratios'])}), ratio of the bests "
          f"{doc['pgd']['ratio_of_best']:.3f}")
    if args.skip_memory:
        args.out.write_text(json.dumps(doc, indent=2))
        return
    with tempfile.TemporaryDirectory() as tmp:
        write_folder(Path(tmp), 2000)
        doc["memory"] = [peak_memory(Path(tmp), n) for n in (500, 2000) * args.memory_repeats]  # interleaved
    for row in doc["memory"]:
        print(f"imagefolder eval over {row['images']} images: peak {row['peak_rss_mb']:.0f} MB, "
              f"{row['seconds']:.1f} s")
    peaks = {n: [r["peak_rss_mb"] for r in doc["memory"] if r["images"] == n] for n in (500, 2000)}
    doc["memory_ratio_2000_over_500"] = max(peaks[2000]) / min(peaks[500])
    print(f"peak at 2,000 images over peak at 500 (largest over smallest): {doc['memory_ratio_2000_over_500']:.3f}")
    args.out.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
