"""WRN-28-10 PGD-10 at the batch ``--batch-size auto`` finds, with and without ``--amp``: images per second.

For a GPU machine (``benchmarks/gpu_check.sh`` runs it); ``--smoke`` runs it on a CPU with a
WRN-10-1 and a few images, to check the script end to end.

For each precision (float32, bf16 autocast) it runs, interleaved, the best of ``--repeats``:

* ``advframe``: ``advframe eval``'s path in Python: :func:`advframe.batch_size.find_batch_size`
  picks the batch, then ``advframe.evaluate`` runs PGD-10 (eps 8/255, random start) with
  ``amp`` set (and channels_last on CUDA, as the CLI does);
* ``bare``: a PyTorch loop over the same batches doing the same passes (one clean forward
  pass, 10 input-gradient passes from a uniform start with sign steps and projection, one
  forward pass to classify), under ``torch.autocast`` for bf16, in channels_last on CUDA.

Inputs are random CIFAR-shaped images; the network has random weights with batch-norm
statistics calibrated on them (no denormals). Writes JSON (``--output``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

import advframe
from advframe.batch_size import find_batch_size
from advframe.model import as_model

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.bench_evaluate import bare_pgd  # noqa: E402
from tests.formats import calibrate_batch_norm  # noqa: E402

EPS, STEPS = 8 / 255, 10


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int, amp: bool, cl: bool) -> float:
    """Top-1 under PGD-10 over the batches, as the evaluation computes it."""
    correct = 0
    for s in range(0, len(y), batch):
        xb, yb = x[s:s + batch], y[s:s + batch]
        if cl:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            net(xb)
        xa = bare_pgd(net, xb, yb, EPS, STEPS, amp)
        with torch.no_grad():
            correct += int((net(xa).argmax(1) == yb).sum())
    return correct / len(y)


def run(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, amp: bool, repeats: int,
        device: torch.device) -> dict[str, Any]:
    model = as_model(net)
    found = find_batch_size(model, x[:2], y[:2], device, cap=len(y))
    cl = device.type == "cuda"
    times: dict[str, list[float]] = {"advframe": [], "bare": []}
    top1: dict[str, float] = {}
    for _ in range(repeats):
        for side in ("bare", "advframe"):
            sync(device)
            start = time.perf_counter()
            if side == "bare":
                top1[side] = bare(net, x, y, found.batch_size, amp, cl)
            else:
                result = advframe.evaluate(model, (x, y), attacks=["pgd"], eps=[EPS], batch_size=found.batch_size,
                                           params={"steps": STEPS, "early_exit": False}, device=str(device),
                                           amp=amp)  # the bare loop's passes
                top1[side] = result.runs[0].top1
            sync(device)
            times[side].append(time.perf_counter() - start)
    best = {k: min(v) for k, v in times.items()}
    return {"amp": amp, "batch_size": found.batch_size, "largest": found.largest, "method": found.method,
            "seconds": times, "images_per_second": {k: len(y) / v for k, v in best.items()},
            "ratio": best["advframe"] / best["bare"], "top1": top1}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--examples", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="WRN-10-1 on 16 images (CPU check)")
    ap.add_argument("--output", type=Path, default=Path("gpu_out") / "bench_gpu_wrn.json")
    args = ap.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    name, config, n = ("wide_resnet", {"depth": 10, "width": 1}, 16) if args.smoke else ("wrn_28_10", {},
                                                                                       args.examples)
    torch.manual_seed(0)
    net = advframe.build_model(name, **config)
    calibrate_batch_norm(net)
    net = net.to(device).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (n,), generator=g).to(device)
    doc = {"model": name, "config": config, "examples": n, "device": str(device),
           "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "torch": torch.__version__,
           "runs": [run(net, x, y, amp, args.repeats, device) for amp in ((False, True) if device.type == "cuda"
                                                                           else (False,))]}  # amp needs CUDA
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(doc, indent=2))
    for r in doc["runs"]:
        ips = r["images_per_second"]
        print(f"{name} PGD-{STEPS} {'bf16 autocast' if r['amp'] else 'float32'}: batch {r['batch_size']} "
              f"({r['method']}, largest {r['largest']}); advframe {ips['advframe']:.1f} img/s, bare loop "
              f"{ips['bare']:.1f} img/s, ratio {r['ratio']:.3f}; top-1 {r['top1']}")


if __name__ == "__main__":
    main()
