"""Time advframe on a GPU (or the CPU) against a bare PyTorch loop and torchattacks, in one run.

Rows (all on the same device, model and batch, interleaved repetitions, CUDA synchronised
before every timer read):

* **pgd-40** (Linf, zero start, so every row does the same deterministic work):
  ``bare`` (exactly 40 forward + 40 input-gradient passes, sign step, projection: the
  physical limit), ``advframe.get_attack("pgd")`` called directly, ``advframe.evaluate``
  with that attack (the evaluator: clean pass, audit, tallies; ``label_leaks=False``),
  and ``torchattacks.PGD`` when importable. Two models: the shipped MNIST model
  (``mnist_cnn_standard``, 1x28x28) and a CIFAR-shaped one (``cifar_cnn`` if registered,
  else ``d2_resnet``, on synthetic 3x32x32 inputs). Batch 256 and the largest batch that
  fits (doubling until out of memory, up to ``--max-batch``, and no larger than what a
  40-step run does in about ``--large-seconds``; both numbers are reported).
* **default eval**: the console script ``advframe eval`` with its defaults (embedded model
  and data, ``iter_ll``, the data set's eps grid, the checks) on ``--device``, wall time
  from process start, against the bare cost of the per-example gradient evaluations it
  reports.
* **worst-case suite**: ``advframe eval --suite autoattack`` if the CLI has ``--suite``
  (else recorded as not available), against torchattacks' AutoAttack on the same examples.
* **pgd_at epoch**: one epoch of ``advframe.train(..., defense="pgd_at")`` on synthetic
  CIFAR-shaped data against a bare PyTorch Madry loop with the same PGD; fp32, and bf16
  autocast on CUDA.

Images per second and ratios (advframe / bare, advframe / torchattacks; median over the
repetitions) go to stdout and to ``--output`` (JSON). Only advframe's public API and CLI
are used.

Usage: ``python benchmarks/bench_gpu.py --device cuda --output gpu_out/bench_gpu.json``
(``--smoke``: tiny sizes, for a CPU check that the script runs end to end).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

import advframe
from advframe.dataset import LabeledData


# ---------------------------------------------------------------- helpers


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def bare_pgd(net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int) -> torch.Tensor:
    """Exactly ``steps`` forward + input-gradient passes; sign step; Linf and [0, 1] projection."""
    xa = x.clone()
    for _ in range(steps):
        xa.requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(net(xa), y), xa)
        with torch.no_grad():
            xa = torch.clamp(x + torch.clamp(xa + alpha * g.sign() - x, -eps, eps), 0, 1)
    return xa.detach()


def load_torchattacks() -> tuple[Any, str]:
    try:
        import torchattacks as ta

        return ta, str(getattr(ta, "__version__", "?"))
    except Exception as exc:  # noqa: BLE001 - any import failure means: not available
        return None, f"unavailable: {type(exc).__name__}: {exc}"


def cifar_model_name() -> str:
    names = advframe.plugins.registry().names("models")
    return "cifar_cnn" if "cifar_cnn" in names else "d2_resnet"


def make_batch(net: nn.Module, shape: tuple[int, ...], n: int, device: torch.device) -> tuple[torch.Tensor,
                                                                                               torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, *shape, generator=g).to(device)
    with torch.no_grad():
        y = torch.cat([net(c).argmax(1) for c in x.split(4096)])  # clean predictions: clean accuracy 1
    return x, y


# ---------------------------------------------------------------- pgd-40


def largest_batch(net: nn.Module, shape: tuple[int, ...], device: torch.device, start: int, cap: int,
                  seconds: float, steps: int) -> dict[str, Any]:
    """Double the batch from ``start`` while one forward+input-gradient pass fits in memory
    (up to ``cap``); the timed batch is the largest one whose ``steps``-step run takes about
    ``seconds`` or less, so that the whole benchmark stays bounded."""
    fits, timed_b, reason = start, start, "cap reached"
    b = start
    while b <= cap:
        try:
            x = torch.rand(b, *shape, device=device, requires_grad=True)
            y = torch.zeros(b, dtype=torch.long, device=device)
            dt = timed(lambda: torch.autograd.grad(F.cross_entropy(net(x), y), x), device)
            dt = min(dt, timed(lambda: torch.autograd.grad(F.cross_entropy(net(x), y), x), device))
            del x, y
        except RuntimeError as exc:
            if not is_oom(exc):
                raise
            reason = "out of memory"
            free(device)
            break
        fits = b
        if dt * steps <= seconds:
            timed_b = b
        b *= 2
    free(device)
    return {"largest_fitting": fits, "timed": timed_b, "stop": reason, "cap": cap,
            "note": (f"largest power-of-two multiple of {start} for which one pass fits ({reason}); "
                     f"timed at the largest whose {steps}-step run takes <= {seconds:g} s")}


def bench_pgd(label: str, net: nn.Module, shape: tuple[int, ...], batch: int, eps: float, alpha: float,
              steps: int, repeats: int, device: torch.device, ta: Any) -> dict[str, Any]:
    x, y = make_batch(net, shape, batch, device)
    threat = advframe.ThreatModel(norm="linf", eps=eps, bounds=(0.0, 1.0))
    attack = advframe.get_attack("pgd", steps=steps, step_size=alpha, random_start=False, early_exit=False)
    model = advframe.as_model(net)
    params = {"pgd": {"steps": steps, "step_size": alpha, "random_start": False, "early_exit": False}}
    x_cpu, y_cpu = x.cpu(), y.cpu()

    def run_eval() -> Any:
        return advframe.evaluate(net, (x_cpu, y_cpu), attacks=["pgd"], eps=[eps], params=params, batch_size=batch,
                                 device=device, label_leaks=False, bounds=(0.0, 1.0))

    rows: dict[str, Callable[[], Any]] = {
        "bare": lambda: bare_pgd(net, x, y, eps, alpha, steps),
        "advframe.get_attack": lambda: attack(model, x, y, threat),
        "advframe.evaluate": run_eval,
    }
    if ta is not None:
        ta_pgd = ta.PGD(net, eps=eps, alpha=alpha, steps=steps, random_start=False)
        rows["torchattacks.PGD"] = lambda: ta_pgd(x, y)
    times: dict[str, list[float]] = {k: [] for k in rows}
    errors: dict[str, str] = {}
    for name, fn in rows.items():  # warm-up (cuDNN autotuning, allocator)
        try:
            fn()
        except RuntimeError as exc:
            if not is_oom(exc):
                raise
            errors[name] = "out of memory"
            free(device)
    for _ in range(repeats):  # interleaved, so drifts hit every row alike
        for name, fn in rows.items():
            if name not in errors:
                times[name].append(timed(fn, device))
    # the work is comparable: same output as the bare loop (zero start, same step and projection)
    ref = bare_pgd(net, x, y, eps, alpha, steps)
    with torch.no_grad():
        adv_acc = float((net(ref).argmax(1) == y).float().mean())
    diff = float((attack(model, x, y, threat) - ref).abs().max())
    out: dict[str, Any] = {"case": label, "batch": batch, "steps": steps, "eps": eps, "step_size": alpha,
                           "bare_robust_accuracy": adv_acc, "max_abs_diff_advframe_vs_bare": diff, "rows": {}}
    base = statistics.median(times["bare"]) if times["bare"] else None
    ta_med = statistics.median(times["torchattacks.PGD"]) if times.get("torchattacks.PGD") else None
    for name in rows:
        if name in errors:
            out["rows"][name] = {"error": errors[name]}
            continue
        med = statistics.median(times[name])
        out["rows"][name] = {"median_s": med, "min_s": min(times[name]), "images_per_s": batch / med,
                             "ratio_vs_bare": med / base if base else None,
                             "ratio_vs_torchattacks": med / ta_med if ta_med else None}
    del x, y
    free(device)
    return out


# ---------------------------------------------------------------- CLI rows


def cli(*args: str, timeout: float, tail: bool = True) -> tuple[int, float, str]:
    exe = Path(sys.executable).parent / "advframe"
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "advframe"]
    t0 = time.perf_counter()
    try:
        r = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "COLUMNS": "200"})
    except subprocess.TimeoutExpired:
        return 124, time.perf_counter() - t0, f"timed out after {timeout:g} s"
    if not tail:
        return r.returncode, time.perf_counter() - t0, r.stdout
    return r.returncode, time.perf_counter() - t0, (r.stderr or r.stdout)[-2000:]


def bare_seconds_per_example_gradient(net: nn.Module, shape: tuple[int, ...], batch: int,
                                      device: torch.device) -> float:
    x, y = make_batch(net, shape, batch, device)
    bare_pgd(net, x, y, 0.1, 0.01, 2)
    t = min(timed(lambda: bare_pgd(net, x, y, 0.1, 0.01, 10), device) for _ in range(3))
    return t / (10 * batch)


def bench_default_eval(device: torch.device, limit: int | None, timeout: float, tmp: Path) -> dict[str, Any]:
    out = tmp / "default_eval.json"
    args = ["eval", "--device", device.type, "--no-progress", "--output", str(out)]
    if limit:
        args += ["--limit", str(limit)]
    code, wall, tail = cli(*args, timeout=timeout)
    shown = [a for a in args if a not in ("--output", str(out))]
    row: dict[str, Any] = {"command": "advframe " + " ".join(shown), "exit": code,
                           "wall_s": wall}
    if code != 0 or not out.exists():
        row["error"] = tail
        return row
    doc = json.loads(out.read_text())
    grads = sum(int(r.get("gradient_evaluations") or 0) for r in doc["runs"])
    net = advframe.load_model("mnist_cnn_standard").to(device).eval()
    per = bare_seconds_per_example_gradient(net, (1, 28, 28), 250, device)
    row.update({"examples": doc["examples"], "attacks": sorted({r["attack"] for r in doc["runs"]}),
                "eps": [r["eps"] for r in doc["runs"]], "checks": len(doc.get("checks") or []),
                "gradient_evaluations": grads, "images_per_s": doc["examples"] / wall,
                "bare_equivalent_s": grads * per,
                "ratio_vs_bare": wall / (grads * per) if grads else None,
                "note": "wall time of the whole console script (start-up, plugin loading, checks included); "
                        "bare_equivalent_s = its per-example gradient evaluations times the bare loop's "
                        "cost of one at batch 250"})
    return row


def bench_suite(device: torch.device, limit: int, timeout: float, tmp: Path, ta: Any) -> dict[str, Any]:
    code, _, helptext = cli("eval", "--help", timeout=120, tail=False)
    if code != 0 or "--suite" not in helptext:
        return {"status": "not available", "note": "advframe eval has no --suite option in this version"}
    out = tmp / "suite.json"
    args = ["eval", "--suite", "autoattack", "--eps", "0.3", "--limit", str(limit), "--device", device.type,
            "--no-progress", "--no-checks", "--output", str(out)]
    code, wall, tail = cli(*args, timeout=timeout)
    row: dict[str, Any] = {"status": "ran" if code == 0 else "failed", "command": "advframe " + " ".join(args[:-2]),
                           "exit": code, "wall_s": wall, "examples": limit, "images_per_s": limit / wall}
    if code != 0:
        row["error"] = tail
    elif out.exists():
        row["worst_case"] = json.loads(out.read_text()).get("worst_case")
    if ta is not None:
        net = advframe.load_model("mnist_cnn_standard").to(device).eval()
        data = advframe.load_dataset("mnist5k", split="test").take(limit)
        x, y = data.x.to(device), data.y.to(device)
        aa = ta.AutoAttack(net, norm="Linf", eps=0.3, version="standard", n_classes=10, seed=0)
        t = timed(lambda: aa(x, y), device)
        row["torchattacks.AutoAttack"] = {"seconds": t, "images_per_s": limit / t,
                                          "note": "in-process, no start-up; advframe row is the whole CLI"}
        row["ratio_vs_torchattacks"] = wall / t
    return row


# ---------------------------------------------------------------- pgd_at epoch


def bare_pgd_at_epoch(net: nn.Module, data: LabeledData, batch: int, eps: float, alpha: float, steps: int,
                      device: torch.device, amp: bool) -> float:
    """Madry's loop by hand: PGD (uniform start, ``steps`` steps) on the current weights in eval
    mode, then an SGD step on the adversarial loss; returns the mean loss."""
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    total = 0.0
    for i in range(0, len(data), batch):
        idx = order[i:i + batch]
        x, y = data.x[idx].to(device), data.y[idx].to(device)
        net.eval()
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            xa = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
            for _ in range(steps):
                xa.requires_grad_(True)
                (g,) = torch.autograd.grad(F.cross_entropy(net(xa), y), xa)
                with torch.no_grad():
                    xa = torch.clamp(x + torch.clamp(xa + alpha * g.sign() - x, -eps, eps), 0, 1)
            net.train()
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(xa.detach()), y)
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(idx)
    return total / len(data)


def bench_pgd_at(name: str, n: int, batch: int, steps: int, device: torch.device, amp: bool) -> dict[str, Any]:
    eps, alpha = 8 / 255, 2 / 255
    g = torch.Generator().manual_seed(0)
    data = LabeledData(torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g), 10,
                       name="synthetic_cifar", split="train")
    dp = {"eps": eps, "steps": steps, "step_size": alpha, "ramp_epochs": 0}  # full eps from the start, as bare

    def run_advframe() -> Any:
        return advframe.train(name, data, defense="pgd_at", defense_params=dp, epochs=1, batch_size=batch,
                              optimizer="sgd", lr=0.05, seed=0, device=device, amp=amp, holdout=0,
                              keep="last", schedule="none")  # the bare loop has neither a held-out monitor nor a schedule

    def run_bare() -> Any:
        torch.manual_seed(0)
        net = advframe.build_model(name).to(device)
        return bare_pgd_at_epoch(net, data, batch, eps, alpha, steps, device, amp)

    warm = LabeledData(data.x[:batch * 2], data.y[:batch * 2], 10, name="warm", split="train")
    advframe.train(name, warm, defense="pgd_at", defense_params=dp, epochs=1, batch_size=batch, device=device,
                   amp=amp, holdout=0, keep="last", schedule="none")
    t_adv = timed(run_advframe, device)
    t_bare = timed(run_bare, device)
    t_adv = min(t_adv, timed(run_advframe, device)) if device.type == "cuda" else t_adv
    return {"model": name, "examples": n, "batch": batch, "pgd_steps": steps, "eps": eps, "amp_bf16": amp,
            "advframe_s": t_adv, "bare_s": t_bare, "advframe_images_per_s": n / t_adv,
            "bare_images_per_s": n / t_bare, "ratio_vs_bare": t_adv / t_bare,
            "statistic": "advframe: best of 2 on CUDA, 1 on CPU; bare: 1"}


# ---------------------------------------------------------------- main


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "torch_cuda": torch.version.cuda, "advframe": getattr(advframe, "__version__", "?"),
                           "device": str(device), "machine": platform.machine(),
                           "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                           "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                           "cpu_threads": torch.get_num_threads()}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env.update({"gpu": p.name, "gpu_memory_gib": round(p.total_memory / 2 ** 30, 1),
                    "multiprocessors": p.multi_processor_count, "capability": f"{p.major}.{p.minor}"})
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--output", type=Path, default=Path("gpu_out") / "bench_gpu.json")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--max-batch", type=int, default=1 << 20)
    parser.add_argument("--large-seconds", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--pgd-at-examples", type=int, default=50_000)
    parser.add_argument("--pgd-at-steps", type=int, default=10)
    parser.add_argument("--eval-limit", type=int, default=None, help="--limit for the default eval (none: all)")
    parser.add_argument("--suite-limit", type=int, default=500)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes and pgd-5 instead of pgd-40: a CPU check that every row runs")
    args = parser.parse_args()
    if args.smoke:
        args.repeats, args.batch, args.max_batch, args.large_seconds = 1, 16, 32, 60.0
        args.pgd_at_examples, args.pgd_at_steps, args.steps = 64, 2, 5
        args.eval_limit, args.suite_limit = args.eval_limit or 20, min(args.suite_limit, 16)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    ta, ta_version = load_torchattacks()
    doc: dict[str, Any] = {"schema": "advframe.bench.gpu/1", "smoke": args.smoke, "environment": environment(device),
                           "torchattacks": ta_version, "statistic": "median of interleaved repeats (min too)",
                           "repeats": args.repeats}
    print(json.dumps(doc["environment"]), f"torchattacks {ta_version}", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        args.output.write_text(json.dumps(doc, indent=2) + "\n")

    t_start = time.perf_counter()
    cifar = cifar_model_name()
    models = [("mnist_cnn_standard", (1, 28, 28), 0.3, 0.01), (cifar, (3, 32, 32), 8 / 255, 2 / 255)]
    doc["pgd"] = []
    for name, shape, eps, alpha in models:
        torch.manual_seed(0)
        net = (advframe.load_model(name) if name == "mnist_cnn_standard" else advframe.build_model(name))
        net = net.to(device).eval()
        size = largest_batch(net, shape, device, args.batch, args.max_batch, args.large_seconds, args.steps)
        for batch in sorted({args.batch, size["timed"]}):
            row = bench_pgd(f"{name} {'x'.join(map(str, shape))}", net, shape, batch, eps, alpha, args.steps,
                            args.repeats if batch == args.batch else max(2, args.repeats // 2), device, ta)
            row["batch_search"] = size
            doc["pgd"].append(row)
            save()
            print("row: pgd", name, batch, {k: round(v.get("images_per_s", 0)) for k, v in row["rows"].items()},
                  flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        doc["default_eval"] = bench_default_eval(device, args.eval_limit, 300, Path(tmp))
        save()
        print("row: default eval", {k: v for k, v in doc["default_eval"].items() if k != "error"}, flush=True)
        doc["worst_case_suite"] = bench_suite(device, args.suite_limit, 300, Path(tmp), ta)
        save()
        print("row: suite", doc["worst_case_suite"].get("status"), flush=True)
    doc["pgd_at_epoch"] = [bench_pgd_at(cifar, args.pgd_at_examples, 128, args.pgd_at_steps, device, False)]
    save()
    if device.type == "cuda":
        doc["pgd_at_epoch"].append(bench_pgd_at(cifar, args.pgd_at_examples, 128, args.pgd_at_steps, device, True))
    doc["total_s"] = time.perf_counter() - t_start
    save()
    print_table(doc)
    print(f"wrote {args.output}")


def print_table(doc: dict[str, Any]) -> None:
    print(f"\n{'case':<28} {'batch':>7} {'row':<22} {'median s':>9} {'img/s':>10} {'/bare':>6} {'/ta':>6}")
    for case in doc["pgd"]:
        for name, r in case["rows"].items():
            if "error" in r:
                print(f"{case['case']:<28} {case['batch']:>7} {name:<22} {r['error']}")
                continue
            ta = f"{r['ratio_vs_torchattacks']:.2f}" if r["ratio_vs_torchattacks"] else "-"
            print(f"{case['case']:<28} {case['batch']:>7} {name:<22} {r['median_s']:>9.4f} {r['images_per_s']:>10.0f} "
                  f"{r['ratio_vs_bare']:>6.2f} {ta:>6}")
    for r in doc["pgd_at_epoch"]:
        print(f"pgd_at epoch {r['model']} n={r['examples']} amp={r['amp_bf16']}: advframe {r['advframe_s']:.2f} s "
              f"({r['advframe_images_per_s']:.0f} img/s), bare {r['bare_s']:.2f} s, ratio {r['ratio_vs_bare']:.2f}")
    d = doc["default_eval"]
    if "error" not in d:
        print(f"default eval: {d['wall_s']:.1f} s for {d['examples']} examples, ratio vs bare "
              f"{d['ratio_vs_bare']:.2f}" if d.get("ratio_vs_bare") else f"default eval: {d['wall_s']:.1f} s")
    else:
        print("default eval failed:", d["error"][-300:])
    print("worst-case suite:", doc["worst_case_suite"].get("status"))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
