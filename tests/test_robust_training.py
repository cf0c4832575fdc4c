"""Robust training: TRADES and Fast-AT against hand computations, the recipe a defense
declares, the held-out slice, keeping the best epoch, the collapse detector, exact resume."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import advframe
from advframe.checkpoint import load_checkpoint
from advframe.dataset import LabeledData
from advframe.errors import ParameterError
from advframe.holdout import Monitor, best_epoch, collapse, holdout_split
from advframe.threat import ThreatModel
from advframe.training import FALLBACK_RECIPE, train
from tests.helpers import linear_training_problem

pytest.importorskip("advframe_advtrain")


def digits(n: int = 60, seed: int = 0) -> LabeledData:
    """Learnable 28x28 'digits': a bright row per class on dim noise, classes in turn."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 10
    x = torch.rand(n, 1, 28, 28, generator=g) * 0.3
    for i in range(n):
        x[i, 0, 2 * int(y[i]) + 4] = 1.0
    return LabeledData(x, y, 10, name="digits", split="train")


SMALL = dict(model_config={"width": 0.5}, batch_size=10, optimizer="adam", lr=0.01, seed=1)


# ---------------------------------------------------------------- TRADES


def test_trades_loss_equals_a_hand_computation():
    model, x, y, data = linear_training_problem(16, 12, 3)
    d = advframe.get_defense("trades", beta=2.5, eps=0.1, steps=3, step_size=0.04)
    d.setup(model, data, {"seed": 5})
    loss, stats = d.training_loss(model, x, y, 7)
    # x' by hand: start x + 0.001 N(0, I) from the step's seed, 3 signed steps up the KL, projected
    gen = torch.Generator().manual_seed(d.step_seed(7))
    lin = model.module
    with torch.no_grad():
        p = F.softmax(lin(x), dim=1)
    xa = torch.min(torch.max(x + 0.001 * torch.randn(x.shape, generator=gen), x - 0.1), x + 0.1).clamp(0, 1)
    for _ in range(3):
        # closed form of d/dx' KL(p || softmax(W x' + b)) = (q - p) W
        q = F.softmax(lin(xa), dim=1).detach()
        xa = xa + 0.04 * ((q - p) @ lin.weight).sign()
        xa = torch.min(torch.max(xa, x - 0.1), x + 0.1).clamp(0, 1)
    with torch.no_grad():
        q = F.softmax(lin(xa), dim=1)
        kl = (p * (p.log() - q.log())).sum(dim=1).mean()
        ce = -p.log().gather(1, y.view(-1, 1)).mean()
    assert float(loss.detach()) == pytest.approx(float(ce + 2.5 * kl), rel=1e-5)
    assert stats["kl"] == pytest.approx(float(kl), rel=1e-5) and stats["kl"] > 0
    # the gradient flows through f(x) and f(x'): beta changes it even where CE is fixed
    loss.backward()
    g_trades = lin.weight.grad.clone()
    lin.weight.grad = None
    F.cross_entropy(lin(x), y).backward()
    assert not torch.allclose(g_trades, lin.weight.grad)


def test_trades_presets_and_bad_beta():
    d = advframe.get_defense("trades")
    assert (d.beta, d.eps) == (6.0, 0.3)
    m = advframe.get_defense("trades", preset="mnist")
    assert (m.beta, m.eps, m.steps, m.step_size) == (1.0, 0.3, 40, 0.01)
    with pytest.raises(ParameterError, match="beta"):
        advframe.get_defense("trades", beta=-1.0)


def test_pgd_kl_leaves_the_label_alone_and_stays_in_the_ball():
    model, x, y, _ = linear_training_problem(16, 12, 3)
    attack = advframe.get_attack("pgd_kl", steps=5, seed=0)
    threat = ThreatModel(eps=0.05)
    a = attack(model, x, y, threat)
    b = attack(model, x, (y + 1) % 3, threat)  # the label is never read
    assert torch.equal(a, b) and threat.audit(a, x).ok
    assert attack.gradient_evaluations == 5 and attack.forward_queries == 1


# ---------------------------------------------------------------- Fast-AT


def test_fast_at_first_step_is_the_closed_form_on_a_linear_model():
    # two classes: the CE gradient of a linear model is (p_y - 1)(w_y - w_o), its sign is
    # sign(w_o - w_y) wherever x is, so x' = clip(x + clamp(d0 + alpha*sign(w_o - w_y), -eps, eps))
    model, x, y, data = linear_training_problem(16, 12, 2)
    d = advframe.get_defense("fast_at", eps=0.1)
    d.setup(model, data, {"seed": 2})
    loss, stats = d.training_loss(model, x, y, 3)
    gen = torch.Generator().manual_seed(d.step_seed(3))
    d0 = (torch.rand(x.shape, generator=gen) * 2 - 1) * 0.1
    start = (x + d0).clamp(0, 1)
    w = model.module.weight.detach()
    direction = (w[1 - y] - w[y]).sign()
    x_adv = (x + (start - x + 0.125 * direction).clamp(-0.1, 0.1)).clamp(0, 1)
    with torch.no_grad():
        expected = F.cross_entropy(model(x_adv), y)
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-6)
    # the step is alpha = 1.25 eps: every coordinate not stopped by the box moved with the sign
    inside = (x_adv > 0) & (x_adv < 1)
    assert bool(((x_adv - x)[inside] * direction[inside] >= 0.025 - 1e-6).all())
    assert set(stats) == {"adv_acc"}


def test_fast_at_declares_wongs_recipe():
    d = advframe.get_defense("fast_at")
    recipe = d.training_recipe()
    assert recipe["schedule"] == "onecycle" and recipe["stop_on_collapse"] is True and recipe["holdout"] > 0
    assert (d.eps, d.alpha_ratio) == (0.3, 1.25)


# ---------------------------------------------------------------- the recipe


def test_a_defense_recipe_fills_what_the_caller_leaves_out():
    r = train("mnist_cnn", digits(40), defense="pgd_at", defense_params={"steps": 1},
              model_config={"width": 0.5}, epochs=1, holdout=10)
    pgd = advframe.get_defense("pgd_at").training_recipe()
    assert r.recipe["optimizer"] == pgd["optimizer"] == "adam" and r.recipe["schedule"] == pgd["schedule"]
    assert r.recipe["epochs"] == 1 and r.recipe["holdout"] == 10 and r.recipe["keep"] == "best"
    s = train("mnist_cnn", digits(40), model_config={"width": 0.5}, epochs=1)
    assert {k: v for k, v in s.recipe.items() if k != "epochs"} == \
        {k: v for k, v in FALLBACK_RECIPE.items() if k != "epochs"}


def test_keep_best_and_stop_on_collapse_need_a_holdout():
    with pytest.raises(ParameterError, match="holdout"):
        train("mnist_cnn", digits(40), keep="best", **SMALL, epochs=1)
    with pytest.raises(ParameterError, match="holdout"):
        train("mnist_cnn", digits(40), defense="fast_at", holdout=0, **SMALL, epochs=1)
    # a one-step defense's recipe arms the detector, which has nothing to watch without a holdout
    r = train("mnist_cnn", digits(40), defense="fgsm_at", **SMALL, epochs=1)
    assert r.recipe["stop_on_collapse"] is True and "holdout_clean" not in r.history[0]


# ---------------------------------------------------------------- the holdout


def test_the_holdout_is_class_balanced_and_disjoint_from_training_and_test():
    train_split = advframe.load_dataset("mnist5k", split="train")
    test_split = advframe.load_dataset("mnist5k", split="test")
    kept, held = holdout_split(train_split, 205)
    assert len(held) == 205 and len(kept) == len(train_split) - 205
    assert set(kept.tolist()).isdisjoint(held.tolist()) and len(set(kept.tolist()) | set(held.tolist())) == 4000
    counts = torch.bincount(train_split.y[held], minlength=10).tolist()
    assert counts == [21] * 5 + [20] * 5
    # no held-out digit is a training digit or a test digit (compared by pixels)
    def keys(x: torch.Tensor) -> set[bytes]:
        return {row.numpy().tobytes() for row in (x * 255).round().to(torch.uint8).reshape(len(x), -1)}
    held_keys = keys(train_split.x[held])
    assert held_keys.isdisjoint(keys(train_split.x[kept])) and held_keys.isdisjoint(keys(test_split.x))
    # the last of each class: a --limit prefix run with the same holdout trains on none of them
    assert held.min() >= 3000


def test_holdout_bad_values():
    data = digits(30)
    with pytest.raises(ParameterError, match="leaves no training example"):
        holdout_split(data, 30)
    with pytest.raises(ParameterError, match="class 0"):
        holdout_split(LabeledData(data.x[:12], torch.tensor([1] * 12), 10), 11)


def test_training_with_a_holdout_never_trains_on_it(monkeypatch):
    seen: list[torch.Tensor] = []
    standard = advframe.get_defense("standard")
    original = type(standard).training_loss

    def spy(self, model, x, y, step):
        seen.append(x.detach().clone())
        return original(self, model, x, y, step)

    monkeypatch.setattr(type(standard), "training_loss", spy)
    data = digits(60)
    r = train("mnist_cnn", data, holdout=10, **SMALL, epochs=1)
    _, held = holdout_split(data, 10)
    trained = torch.cat(seen)
    assert len(trained) == 50 and "holdout_clean" in r.history[0]
    for h in data.x[held]:
        assert not any(torch.equal(h, t) for t in trained)


def test_monitoring_leaves_the_training_run_unchanged():
    data = digits(60)
    plain = train("mnist_cnn", LabeledData(data.x, data.y, 10), defense="fast_at", holdout=0, keep="last",
                  stop_on_collapse=False, **SMALL, epochs=2)
    # the same training examples, now with a held-out slice measured every epoch (its own seeded PGD)
    kept, held = holdout_split(data, 10)
    watched = train("mnist_cnn", data, defense="fast_at", holdout=10, keep="last", stop_on_collapse=False,
                    **SMALL, epochs=2)
    again = train("mnist_cnn", LabeledData(data.x[kept], data.y[kept], 10), defense="fast_at", holdout=0,
                  keep="last", stop_on_collapse=False, **SMALL, epochs=2)
    wa, wb = watched.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert {"holdout_clean", "holdout_robust"} <= set(watched.history[-1]) and plain.history


# ---------------------------------------------------------------- keep best, collapse


def scripted(monkeypatch, robust: list[float], clean: list[float]) -> None:
    """Make the monitor report the given held-out accuracies, epoch by epoch."""
    calls = {"n": 0}

    def measure(self, model, device):
        i = calls["n"]
        calls["n"] += 1
        return {"holdout_clean": clean[i], "holdout_robust": robust[i]}

    monkeypatch.setattr(Monitor, "measure", measure)


def test_keep_best_keeps_the_best_held_out_epoch(monkeypatch, tmp_path):
    scripted(monkeypatch, robust=[0.3, 0.6, 0.5], clean=[0.8, 0.9, 0.95])
    data = digits(60)
    out = tmp_path / "best.safetensors"
    r = train("mnist_cnn", data, defense="pgd_at", defense_params={"steps": 1}, holdout=10, keep="best",
              schedule="none", out=out, **SMALL, epochs=3)
    assert r.kept_epoch == 2 and r.epochs == 3 and r.stopped is None
    monkeypatch.undo()
    two = train("mnist_cnn", data, defense="pgd_at", defense_params={"steps": 1}, holdout=10, keep="last",
                schedule="none", **SMALL, epochs=2)
    three = train("mnist_cnn", data, defense="pgd_at", defense_params={"steps": 1}, holdout=10, keep="last",
                  schedule="none", **SMALL, epochs=3)
    tensors, meta = load_checkpoint(out)
    for k, v in two.model.state_dict().items():
        assert torch.equal(r.model.state_dict()[k], v) and torch.equal(tensors[f"model.{k}"], v)
        assert torch.equal(tensors[f"last.{k}"], three.model.state_dict()[k])  # for a resume
    assert meta["kept_epoch"] == 2 and [e["holdout_robust"] for e in meta["history"]] == [0.3, 0.6, 0.5]
    assert advframe.load_model(out) is not None


def test_best_epoch_and_collapse_on_scripted_histories():
    def hist(robust, clean):
        return [{"epoch": i + 1, "holdout_robust": r, "holdout_clean": c} for i, (r, c) in enumerate(zip(robust, clean))]

    healthy = hist([0.1, 0.4, 0.55, 0.6, 0.58], [0.7, 0.85, 0.9, 0.93, 0.94])
    for k in range(1, 6):
        assert collapse(healthy[:k]) is None
    assert best_epoch(healthy) == 4
    # Wong et al.'s catastrophic overfitting: robust accuracy falls to ~0 within an epoch, clean rises
    broken = hist([0.3, 0.55, 0.6, 0.02], [0.8, 0.9, 0.92, 0.97])
    message = collapse(broken)
    assert message is not None and "epoch 4" in message and "2.0%" in message and "best 60.0% at epoch 3" in message
    # a model that gets worse at everything is diverging, not overfitting
    assert collapse(hist([0.5, 0.6, 0.1], [0.9, 0.9, 0.5])) is None
    assert collapse(hist([0.5, 0.6, 0.45], [0.9, 0.9, 0.95])) is None  # a drop of 15 points, above a third
    # measured: FGSM training from x (fast_at random_start=false) on mnist5k, held-out PGD accuracy
    # 4.5, 10, 17 % then 12, 5 % while clean accuracy rose: caught at epoch 5, not before
    fgsm = hist([0.045, 0.10, 0.17, 0.12, 0.05], [0.55, 0.58, 0.735, 0.87, 0.855])
    assert [collapse(fgsm[:k]) is not None for k in range(1, 6)] == [False] * 4 + [True]
    # measured: fast_at with alpha = 2.5 eps dipped from 25.5 % to 13 % and recovered to 61 %: not a collapse
    dip = hist([0.06, 0.18, 0.245, 0.215, 0.255, 0.25, 0.225, 0.195, 0.21, 0.2, 0.165, 0.18, 0.13, 0.215],
               [0.61, 0.61, 0.79, 0.885, 0.915, 0.92, 0.93, 0.935, 0.95, 0.955, 0.96, 0.965, 0.97, 0.975])
    assert all(collapse(dip[:k]) is None for k in range(1, len(dip) + 1))
    assert best_epoch([{"epoch": 1, "loss": 1.0}]) is None


def test_a_collapse_stops_training_and_keeps_the_best_epoch(monkeypatch, tmp_path):
    scripted(monkeypatch, robust=[0.4, 0.7, 0.05, 0.0], clean=[0.8, 0.9, 0.97, 0.99])
    out = tmp_path / "fast.safetensors"
    r = train("mnist_cnn", digits(60), defense="fast_at", holdout=10, out=out, **SMALL, epochs=4)
    assert r.epochs == 3 and r.kept_epoch == 2
    assert r.stopped is not None and r.stopped.startswith("catastrophic overfitting at epoch 3")
    _, meta = load_checkpoint(out)
    assert meta["stopped"] == r.stopped and len(meta["history"]) == 3 and meta["kept_epoch"] == 2


def test_the_cli_says_so_in_one_line(monkeypatch, tmp_path):
    from tests.helpers import invoke

    scripted(monkeypatch, robust=[0.4, 0.7, 0.05], clean=[0.8, 0.9, 0.97])
    out = tmp_path / "fast.safetensors"
    res = invoke(["train", "--defense", "fast_at", "--limit", "60", "--holdout", "20",
                                   "--epochs", "3", "--model-param", "width=0.5", "--no-progress", "--device", "cpu",
                                   "--out", str(out)])
    assert res.code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if "catastrophic overfitting" in ln]
    assert len(lines) == 1 and "kept epoch 2" in lines[0]


# ---------------------------------------------------------------- resume


@pytest.mark.parametrize("defense,extra", [
    ("standard", {"schedule": "onecycle"}),
    ("standard", {"schedule": "cosine", "warmup_epochs": 1.5}),
    ("standard", {"schedule": "step", "holdout": 10, "keep": "best"}),
    ("fast_at", {"holdout": 10}),
])
def test_resume_with_a_scheduler_is_bit_exact(tmp_path, defense, extra):
    kw = {**SMALL, "epochs": 3, "defense": defense, **extra}
    straight = train("mnist_cnn", digits(60), out=tmp_path / "a.safetensors", **kw)
    part = train("mnist_cnn", digits(60), out=tmp_path / "b.safetensors", max_steps=8, **kw)
    assert part.steps == 8
    torch.manual_seed(123)
    resumed = train("mnist_cnn", digits(60), out=tmp_path / "b.safetensors", resume=True, **kw)
    assert resumed.steps == straight.steps and resumed.kept_epoch == straight.kept_epoch
    wa, wb = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert resumed.history == straight.history
    ta, ma = load_checkpoint(tmp_path / "a.safetensors")
    tb, mb = load_checkpoint(tmp_path / "b.safetensors")
    assert ma["scheduler_state"] == mb["scheduler_state"] and set(ta) == set(tb)
    assert math.isfinite(resumed.final_loss)


# ---------------------------------------------------------------- augmentation


def test_shift_translates_each_image_by_its_offset():
    from advframe.augment import SHIFT, offsets, shift

    x = torch.rand(3, 2, 6, 7)
    offset = torch.tensor([[SHIFT, SHIFT], [0, 2 * SHIFT], [2 * SHIFT, 1]])
    out = shift(x, offset, 0.0)
    assert torch.equal(out[0], x[0])  # the centre offset is the identity
    # offset (0, 4): the image moves down 2 rows and left 2 columns, black fills the gap
    assert torch.equal(out[1, :, 2:, :5], x[1, :, :4, 2:]) and bool((out[1, :, :2] == 0).all())
    assert bool((out[1, :, :, 5:] == 0).all())
    assert torch.equal(out[2, :, :4, 1:], x[2, :, 2:, :6])  # up 2 rows, right 1 column
    assert torch.equal(offsets(5, 0, 3), offsets(5, 0, 3)) and not torch.equal(offsets(5, 0, 3), offsets(5, 0, 4))
    with pytest.raises(ParameterError, match="shape"):
        shift(torch.rand(3, 10), offset, 0.0)


def test_training_with_shifts_resumes_exactly_and_differs_from_plain(tmp_path):
    kw = {**SMALL, "epochs": 2, "augment": "shift"}
    straight = train("mnist_cnn", digits(60), out=tmp_path / "a.safetensors", **kw)
    train("mnist_cnn", digits(60), out=tmp_path / "b.safetensors", max_steps=5, **kw)
    resumed = train("mnist_cnn", digits(60), out=tmp_path / "b.safetensors", resume=True, **kw)
    plain = train("mnist_cnn", digits(60), **{**kw, "augment": "none"})
    wa, wb, wp = straight.model.state_dict(), resumed.model.state_dict(), plain.model.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wp[k]) for k in wa)
    with pytest.raises(ParameterError, match="augment"):
        train("mnist_cnn", digits(60), **{**kw, "augment": "flip"})
