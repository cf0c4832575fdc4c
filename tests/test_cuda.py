"""CUDA code paths: eval and train on ``cuda`` agree with the CPU, bf16 autocast trains
and its checkpoint loads on the CPU, every attack keeps its threat model on the GPU, and
``torchrun --nproc-per-node 1`` runs with the ``nccl`` backend.

Every test is marked ``cuda`` and skips, saying why, where ``torch.cuda.is_available()``
is false (CI and the developers' machines). ``benchmarks/gpu_check.sh`` runs them on a
GPU machine. One GPU cannot host two NCCL ranks (NCCL refuses two ranks on one device),
so multi-rank NCCL (DDP over NCCL) is not exercised here: the one-rank test runs the
NCCL collectives advframe itself issues (all-reduce of the tallies, barrier), not DDP.
"""

from __future__ import annotations

import json
import math
import sys
import textwrap

import pytest
import torch

import advframe
from advframe.checkpoint import read_metadata
from advframe.dataset import LabeledData
from advframe.distributed import free_port

from tests.helpers import run_process

pytest.importorskip("advframe_zoo")

HAS_CUDA = torch.cuda.is_available()
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not HAS_CUDA, reason="CUDA is not available (torch.cuda.is_available() is "
                                                       "False): run on a GPU machine, see benchmarks/gpu_check.sh")]


@pytest.fixture(autouse=True)
def exact_fp32():
    """TF32 off for cuDNN convolutions and matmuls, so that CUDA fp32 is comparable with the CPU."""
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def mnist(split: str, n: int) -> LabeledData:
    return advframe.load_dataset("mnist5k", split=split).take(n)


def tiny_data(n: int = 64, seed: int = 0) -> LabeledData:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 10
    x = torch.rand(n, 1, 28, 28, generator=g) * 0.3
    for i in range(n):  # a learnable signal: a bright row per class
        x[i, 0, 2 * int(y[i]) + 4] = 1.0
    return LabeledData(x, y, 10, name="tiny", split="train")


# ---------------------------------------------------------------- eval and train, CUDA == CPU


def test_shipped_model_logits_on_cuda_equal_cpu():
    model = advframe.load_model("mnist_cnn_standard")
    x = mnist("test", 256).x
    with torch.no_grad():
        cpu = model(x)
        gpu = model.to("cuda")(x.to("cuda")).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=1e-4)


def test_eval_on_cuda_equals_cpu():
    """The same evaluation on both devices: clean accuracy equal, attacked accuracy within
    a few examples (sign steps can flip on gradients that round differently), no violation."""
    kw = dict(attacks=["fgsm", "pgd", "iter_ll"], eps=[0.1, 0.3],
              params={"pgd": {"steps": 10, "random_start": False}, "iter_ll": {"steps": 10}},
              batch_size=200, limit=400, seed=0)
    data = mnist("test", 400)
    cpu = advframe.evaluate(advframe.load_model("mnist_cnn_standard"), data, device="cpu", **kw).to_dict()
    gpu = advframe.evaluate(advframe.load_model("mnist_cnn_standard"), data, device="cuda", **kw).to_dict()
    assert gpu["examples"] == cpu["examples"] == 400
    assert gpu["clean"]["top1"] == pytest.approx(cpu["clean"]["top1"], abs=1 / 400 + 1e-9)
    assert len(gpu["runs"]) == len(cpu["runs"]) == 6
    for g, c in zip(gpu["runs"], cpu["runs"]):
        assert (g["attack"], g["eps"]) == (c["attack"], c["eps"])
        assert g["violations"] == c["violations"] == 0
        assert g["max_perturbation"] <= g["eps"] + 1e-5
        assert g["top1"] == pytest.approx(c["top1"], abs=0.01), (g["attack"], g["eps"])
    assert gpu["runs"][-1]["top1"] < gpu["clean"]["top1"]  # the attacks do something on the GPU


def test_train_on_cuda_equals_cpu():
    kw = dict(model_config={"width": 0.5}, epochs=2, batch_size=16, optimizer="sgd", lr=0.05, seed=3)
    cpu = advframe.train("mnist_cnn", tiny_data(), device="cpu", **kw)
    gpu = advframe.train("mnist_cnn", tiny_data(), device="cuda", **kw)
    assert gpu.steps == cpu.steps == 8
    for hg, hc in zip(gpu.history, cpu.history):
        assert hg["loss"] == pytest.approx(hc["loss"], rel=1e-3, abs=1e-4)
    wc, wg = cpu.model.state_dict(), gpu.model.state_dict()
    assert wc.keys() == wg.keys()
    assert all(v.device.type == "cuda" for v in wg.values())
    for k in wc:
        torch.testing.assert_close(wg[k].cpu(), wc[k], rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------- bf16 autocast


def test_bf16_autocast_training_learns_and_its_checkpoint_loads_on_cpu(tmp_path):
    out = tmp_path / "amp.safetensors"
    r = advframe.train("mnist_cnn", mnist("train", 1024), model_config={"width": 0.5}, epochs=3, batch_size=64,
                       optimizer="adam", lr=0.005, seed=0, device="cuda", amp=True, out=out, dataset_name="mnist5k")
    losses = [h["loss"] for h in r.history]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.7 * losses[0], losses
    assert read_metadata(out)["train_args"]["amp"] is True
    loaded = advframe.load_model(out)  # on the CPU, from the file alone
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in loaded.parameters())
    x = mnist("test", 256).x
    with torch.no_grad():
        on_cpu = loaded(x)
        on_gpu = r.model(x.to("cuda")).float().cpu()
    torch.testing.assert_close(on_cpu, on_gpu, rtol=1e-3, atol=1e-3)
    acc = advframe.evaluate(loaded, mnist("test", 500), attacks=["fgsm"], eps=[0.1], device="cpu").to_dict()
    assert acc["clean"]["top1"] > 0.5  # chance is 0.1


def test_bf16_autocast_pgd_at_runs_on_cuda(tmp_path):
    out = tmp_path / "pgd_at.safetensors"
    r = advframe.train("mnist_cnn", mnist("train", 512), model_config={"width": 0.5}, defense="pgd_at",
                       defense_params={"eps": 0.1, "steps": 5, "step_size": 0.05}, epochs=1, batch_size=64,
                       optimizer="adam", lr=0.002, seed=0, device="cuda", amp=True, out=out)
    assert r.steps == 8 and math.isfinite(r.final_loss)
    assert "adv_acc" in r.history[0]
    advframe.load_model(out)


# ---------------------------------------------------------------- threat model on the GPU

FAST = {"pgd": {"steps": 5}, "iter_basic": {"steps": 5}, "iter_ll": {"steps": 5}, "mim": {"steps": 5},
        "cw_l2": {"binary_search_steps": 2, "max_iterations": 30}, "lbfgs": {"binary_search_steps": 2,
                                                                           "max_iterations": 15},
        "deepfool": {"max_iter": 10}}
NEEDS_FILE = {"generator"}  # built from a trained generator checkpoint


def attack_cases() -> list[tuple[str, str, bool]]:
    reg = advframe.plugins.registry()
    cases = []
    for name in reg.names("attacks"):
        if name in NEEDS_FILE:
            continue
        cls = reg.get("attacks", name).factory
        for norm in getattr(cls, "norms", ("linf",)):
            for targeted in ((False, True) if getattr(cls, "targetable", False) else (False,)):
                cases.append((name, norm, targeted))
    return cases


@pytest.mark.parametrize("name,norm,targeted", attack_cases() if HAS_CUDA else [("none", "linf", False)])
def test_attack_keeps_its_threat_model_on_cuda(name, norm, targeted):
    model = advframe.load_model("mnist_cnn_standard").to("cuda").eval()
    data = mnist("test", 64)
    x, y = data.x.to("cuda"), data.y.to("cuda")
    x0 = x.clone()
    eps = 0.2 if norm == "linf" else 2.0
    threat = advframe.ThreatModel(norm=norm, eps=eps, bounds=(0.0, 1.0), targeted=targeted)
    target = (y + 1) % 10 if targeted else None
    x_adv = advframe.get_attack(name, **FAST.get(name, {}))(model, x, y, threat, target)
    assert x_adv.device.type == "cuda" and x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert torch.equal(x, x0), "the attack wrote into its input"
    report = threat.audit(x_adv, x)
    assert report.violations == 0, (report.max_excess, report.nonfinite)


# ---------------------------------------------------------------- torchrun, nccl


def test_torchrun_one_process_trains_and_evaluates_on_cuda(tmp_path):
    out, res = tmp_path / "m.safetensors", tmp_path / "r.json"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1",
                "--master-port", str(free_port()), "-m", "advframe"]
    r = run_process([*torchrun, "train", "--model", "mnist_cnn", "--model-param", "width=0.5", "--dataset", "mnist5k",
                     "--epochs", "1", "--batch-size", "64", "--optimizer", "adam", "--lr", "0.005", "--device", "cuda", "--amp", "--out", str(out),
                     "--no-progress"], timeout=240)
    assert r.returncode == 0, r.stderr
    assert read_metadata(out)["train_args"]["amp"] is True
    r = run_process([*torchrun, "eval", "--model", str(out), "--attack", "fgsm", "--eps", "0.1", "--limit", "500",
                     "--device", "cuda", "--no-progress", "--no-checks", "--output", str(res)], timeout=240)
    assert r.returncode == 0, r.stderr
    doc = json.loads(res.read_text())
    assert doc["examples"] == 500 and doc["runs"][0]["violations"] == 0
    assert doc["clean"]["top1"] > 0.5


NCCL_SCRIPT = """
    import json, sys
    import torch, torch.distributed as dist
    import advframe
    from advframe import distributed

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.cuda.set_device(0)
    dist.init_process_group(backend="nccl")  # one rank, from torchrun's environment
    rank, world = distributed.rank_and_world()
    data = advframe.load_dataset("mnist5k", split="train").take(512)
    r = advframe.train("mnist_cnn", data, model_config={"width": 0.5}, epochs=1, batch_size=64, seed=1,
                       device="cuda", out=sys.argv[1])
    ev = advframe.evaluate(r.model, advframe.load_dataset("mnist5k").take(400), attacks=["fgsm"], eps=[0.1],
                           device="cuda", batch_size=100).to_dict()
    n = distributed.global_count(7)  # an NCCL all-reduce of a CUDA tensor
    info = {"backend": dist.get_backend(), "rank": rank, "world": world, "steps": r.steps, "count": n,
            "clean": ev["clean"]["top1"], "adv": ev["runs"][0]["top1"], "violations": ev["runs"][0]["violations"]}
    dist.destroy_process_group()
    print("RESULT " + json.dumps(info))
"""


def test_nccl_process_group_of_one_trains_and_evaluates(tmp_path):
    """advframe inside an explicit one-rank NCCL group: its all-reduces and barrier go through
    NCCL and the results equal the run without a group."""
    script = tmp_path / "nccl_one.py"
    script.write_text(textwrap.dedent(NCCL_SCRIPT))
    r = run_process([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1",
                     "--master-port", str(free_port()), str(script), str(tmp_path / "n.safetensors")], timeout=240)
    assert r.returncode == 0, r.stderr
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    info = json.loads(line[len("RESULT "):])
    assert info["backend"] == "nccl" and info["rank"] == 0 and info["world"] == 1
    assert info["steps"] == 8 and info["count"] == 7 and info["violations"] == 0
    plain = advframe.train("mnist_cnn", mnist("train", 512), model_config={"width": 0.5}, epochs=1, batch_size=64,
                           seed=1, device="cuda")
    ev = advframe.evaluate(plain.model, mnist("test", 400), attacks=["fgsm"], eps=[0.1], device="cuda",
                           batch_size=100).to_dict()
    assert info["clean"] == pytest.approx(ev["clean"]["top1"], abs=0.01)  # GPU training is not bitwise deterministic
    assert info["adv"] == pytest.approx(ev["runs"][0]["top1"], abs=0.01)
