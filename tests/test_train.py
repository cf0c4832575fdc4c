"""advframe.train: the standard defense, optimisers, schedules, exact resume, checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import advframe
from advframe.checkpoint import load_checkpoint
from advframe.dataset import LabeledData
from advframe.errors import CheckpointError, ParameterError
from advframe.schedules import make_scheduler
from advframe.training import epoch_order, flatten_optimizer, train, unflatten_optimizer

pytest.importorskip("advframe_zoo")


def tiny_data(n: int = 40, seed: int = 0) -> LabeledData:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 10
    x = torch.rand(n, 1, 28, 28, generator=g) * 0.3
    for i in range(n):  # a learnable signal: a bright row per class
        x[i, 0, 2 * int(y[i]) + 4] = 1.0
    return LabeledData(x, y, 10, name="tiny", split="train")


KW = dict(model_config={"width": 0.5}, epochs=2, batch_size=8, optimizer="adam", lr=0.01, seed=3)


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_standard_defense_is_builtin_and_registered():
    entry = advframe.plugins.registry().get("defenses", "standard")
    assert entry.distribution == "advframe" and entry.plugin == "builtin"
    d = advframe.get_defense("standard")
    model = advframe.build_model("mnist_cnn", width=0.5)
    data = tiny_data(8)
    loss, stats = d.training_loss(model, data.x, data.y, 0)
    expected = torch.nn.functional.cross_entropy(model(data.x), data.y)
    assert torch.allclose(loss, expected) and 0.0 <= stats["clean_acc"] <= 1.0


def test_train_learns_and_reports_progress():
    events = []
    r = train("mnist_cnn", tiny_data(), progress=events.append, **{**KW, "epochs": 4})
    assert r.steps == 4 * 5 and r.epochs == 4 and len(r.history) == 4
    assert r.history[-1]["loss"] < r.history[0]["loss"]
    assert r.history[-1]["clean_acc"] > r.history[0]["clean_acc"]
    assert r.final_loss == pytest.approx(r.history[-1]["loss"])
    assert events[0].task == "epoch 1" and events[-1].task == "epoch 4"
    assert events[-1].completed == events[-1].total == 5 and "loss" in events[-1].info
    assert "clean_acc" in events[-1].info
    # the bar's numbers are the epoch's running means: each epoch's last event is its history entry
    for k, entry in enumerate(r.history, start=1):
        last = [e for e in events if e.task == f"epoch {k}"][-1]
        assert last.info["loss"] == pytest.approx(entry["loss"])
        assert last.info["clean_acc"] == pytest.approx(entry["clean_acc"])
    assert events[-1].info["loss"] == pytest.approx(r.final_loss)  # what 'advframe train' prints at the end


def test_same_seed_same_weights_other_seed_other_weights():
    a = train("mnist_cnn", tiny_data(), **{**KW, "epochs": 1}).model
    b = train("mnist_cnn", tiny_data(), **{**KW, "epochs": 1}).model
    c = train("mnist_cnn", tiny_data(), **{**KW, "epochs": 1, "seed": 4}).model
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert not all(torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


@pytest.mark.parametrize("optimizer,schedule", [("sgd", "cosine"), ("adam", "none"), ("rmsprop", "step")])
def test_resume_gives_exactly_the_uninterrupted_weights(tmp_path, optimizer, schedule):
    kw = {**KW, "optimizer": optimizer, "schedule": schedule, "lr": 0.01, "weight_decay": 1e-4}
    straight = train("mnist_cnn", tiny_data(), out=tmp_path / "a.safetensors", **kw)
    # interrupted mid-epoch 1 (step 7 of 5-step epochs), then resumed to the end
    part = train("mnist_cnn", tiny_data(), out=tmp_path / "b.safetensors", max_steps=7, **kw)
    assert part.steps == 7 and part.epochs == 1
    torch.manual_seed(999)  # resume must not depend on the caller's RNG
    resumed = train("mnist_cnn", tiny_data(), out=tmp_path / "b.safetensors", resume=True, **kw)
    assert resumed.steps == straight.steps == 10
    wa, wb = straight.model.state_dict(), resumed.model.state_dict()
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert resumed.history == straight.history
    ta, _ = load_checkpoint(tmp_path / "a.safetensors")
    tb, _ = load_checkpoint(tmp_path / "b.safetensors")
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_resume_from_periodic_checkpoint_after_a_crash(tmp_path):
    out = tmp_path / "c.safetensors"
    straight = train("mnist_cnn", tiny_data(), **KW)

    class Crash(Exception):
        pass

    def crash_at_step_6(event):
        if event.task == "epoch 2" and event.completed == 1:
            raise Crash

    with pytest.raises(Crash):
        train("mnist_cnn", tiny_data(), out=out, checkpoint_every=3, progress=crash_at_step_6, **KW)
    _, meta = load_checkpoint(out, tensors=False)
    assert meta["step"] == 3 and meta["epoch"] == 0 and meta["batch"] == 3
    resumed = train("mnist_cnn", tiny_data(), out=out, resume=True, **KW)
    wa, wb = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_refuses_other_settings(tmp_path):
    out = tmp_path / "d.safetensors"
    train("mnist_cnn", tiny_data(), out=out, max_steps=2, **KW)
    with pytest.raises(CheckpointError, match="seed"):
        train("mnist_cnn", tiny_data(), out=out, resume=True, **{**KW, "seed": 5})
    with pytest.raises(CheckpointError, match="model_config"):
        train("mnist_cnn", tiny_data(), out=out, resume=True, **{**KW, "model_config": {"width": 1.0}})


def test_checkpoint_contents_and_load_model_round_trip(tmp_path):
    out = tmp_path / "m.safetensors"
    r = train("mnist_cnn", tiny_data(), out=out, dataset_name="tiny",
              threat=advframe.ThreatModel(norm="linf", eps=0.1), **KW)
    tensors, meta = load_checkpoint(out)
    assert meta["model"] == "mnist_cnn" and meta["model_config"] == {"width": 0.5}
    assert meta["dataset"] == "tiny" and meta["defense"] == "standard" and meta["defense_params"] == {}
    assert meta["threat_model"]["eps"] == 0.1 and meta["step"] == 10 and meta["epoch"] == 2
    assert meta["train_args"]["optimizer"] == "adam" and meta["scheduler"]["name"] == "none"
    assert tensors["rng.torch"].dtype == torch.uint8
    assert any(k.startswith("optim.state.") for k in tensors)
    assert any(k.startswith("model.") for k in tensors)
    raw = Path(out).read_bytes()
    assert b"pickle" not in raw[:200]
    model = advframe.load_model(out)
    x = tiny_data(6).x
    with torch.no_grad():
        assert torch.equal(model(x), r.model(x))


def test_eval_cli_rebuilds_model_from_file_alone(tmp_path):
    typer_testing = pytest.importorskip("typer.testing")
    from advframe.cli.app import build_app

    out = tmp_path / "cli.safetensors"
    r = train("mnist_cnn", tiny_data(), out=out, dataset_name="mnist5k", **KW)
    doc = tmp_path / "eval.json"
    res = typer_testing.CliRunner().invoke(build_app(), ["eval", "--model", str(out), "--dataset", "mnist5k",
                                                         "--limit", "20", "--attack", "fgsm", "--eps", "0.1",
                                                         "--device", "cpu", "--no-progress", "--output", str(doc)])
    assert res.exit_code == 0, res.output
    import json

    result = json.loads(doc.read_text())
    assert result["examples"] == 20
    data = advframe.load_dataset("mnist5k", split="test").take(20)
    with torch.no_grad():
        expected = (r.model.predict(r.model(data.x)) == data.y).float().mean().item()
    assert result["clean"]["top1"] == pytest.approx(expected)


def test_optimizer_state_flattening_round_trip():
    p = torch.nn.Parameter(torch.randn(3))
    opt = torch.optim.Adam([p], lr=0.1)
    p.grad = torch.ones(3)
    opt.step()
    tensors, meta = flatten_optimizer(opt.state_dict())
    assert set(tensors) == {"optim.state.0.step", "optim.state.0.exp_avg", "optim.state.0.exp_avg_sq"}
    import json
    json.dumps(meta)  # the rest is plain JSON
    back = unflatten_optimizer(tensors, json.loads(json.dumps(meta)))
    opt2 = torch.optim.Adam([torch.nn.Parameter(p.detach().clone())], lr=0.1)
    opt2.load_state_dict(back)
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    out = tmp_path / "atomic.safetensors"
    train("mnist_cnn", tiny_data(), out=out, **{**KW, "epochs": 1})
    before = out.read_bytes()
    import os

    def failing_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        train("mnist_cnn", tiny_data(), out=out, **{**KW, "epochs": 1, "seed": 4})
    assert out.read_bytes() == before  # the old checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["atomic.safetensors"]  # no temporary left


def rates(schedule: str, total: int, warmup: int = 0, lr: float = 0.1) -> list[float]:
    """The learning rate of each optimiser step of a run, as the training loop steps the scheduler."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = make_scheduler(opt, schedule, total, warmup)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_schedules_and_epoch_order():
    assert rates("none", 100) == [0.1] * 100
    cos = rates("cosine", 100)
    assert cos[0] == pytest.approx(0.1) and cos[50] == pytest.approx(0.05)
    assert cos[99] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 99 / 100)))
    step = rates("step", 100, lr=1.0)
    assert [step[s] for s in (0, 49, 50, 74, 75, 99)] == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
    warm = rates("cosine", 110, warmup=10)  # linear rise over 10 steps, then cosine over the other 100
    assert warm[:10] == pytest.approx([0.1 * (i + 1) / 10 for i in range(10)])
    assert warm[10:] == pytest.approx(cos)
    one = rates("onecycle", 100)  # Fast-AT's triangle: up to the base rate half-way, then down to ~0
    peak = max(range(100), key=lambda i: one[i])
    assert 48 <= peak <= 50 and one[peak] == pytest.approx(0.1)
    assert one[0] < 0.01 and one[-1] < 1e-4
    assert all(a <= b for a, b in zip(one[:peak], one[1:peak + 1]))
    assert all(a >= b for a, b in zip(one[peak:], one[peak + 1:]))
    a, b = epoch_order(50, 0, 0), epoch_order(50, 0, 1)
    assert torch.equal(a, epoch_order(50, 0, 0)) and not torch.equal(a, b)
    assert sorted(a.tolist()) == list(range(50))


@pytest.mark.parametrize("kw,match", [({"optimizer": "lbfgs"}, "optimizer"), ({"schedule": "linear"}, "schedule"),
                                      ({"epochs": 0}, "epochs"), ({"lr": -1.0}, "learning rate"),
                                      ({"batch_size": 0}, "batch size"), ({"device": "gpu0"}, "device")])
def test_bad_arguments(kw, match):
    with pytest.raises(ParameterError, match=match):
        train("mnist_cnn", tiny_data(8), **{**KW, **kw})


def test_advframe_train_is_the_training_function():
    import advframe.training

    assert advframe.train is advframe.training.train
    r = advframe.train("mnist_cnn", tiny_data(8), **{**KW, "epochs": 1})
    assert r.steps == 1 and math.isfinite(r.final_loss) and isinstance(r, advframe.TrainResult)


def test_cli_train_limit_trains_on_a_prefix(tmp_path):
    from advframe.checkpoint import read_metadata
    from tests.helpers import invoke

    out = tmp_path / "m.safetensors"
    done = invoke(["train", "--model", "mnist_cnn", "--model-param", "width=0.25", "--limit", "300", "--epochs", "1",
                   "--batch-size", "100", "--no-progress", "--device", "cpu", "--out", str(out)])
    assert done.code == 0, done.output
    meta = read_metadata(out)
    assert meta["train_args"]["examples"] == 300 and meta["step"] == 3
