"""Adversarial training defenses against their papers' formulas, on tiny linear models."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import advframe
from advframe.errors import ParameterError
from advframe.model import as_model
from advframe.threat import ThreatModel
from advframe_advtrain._common import step_generator, truncated_half_normal
from tests.helpers import linear_training_problem


def ce_grad_x(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Closed form ∇x of the summed cross-entropy of a linear model: (softmax − onehot) W."""
    lin = model.module
    p = F.softmax(lin(x), dim=1)
    return (p - F.one_hot(labels, p.shape[1]).float()) @ lin.weight


def test_fgsm_at_equals_goodfellow_objective():
    model, x, y, data = linear_training_problem()
    d = advframe.get_defense("fgsm_at", eps=0.2, alpha=0.3)
    d.setup(model, data, {"seed": 0})
    loss, stats = d.training_loss(model, x, y, 0)
    with torch.no_grad():
        x_adv = (x + 0.2 * ce_grad_x(model, x, y).sign()).clamp(0, 1)
        expected = 0.3 * F.cross_entropy(model(x), y) + 0.7 * F.cross_entropy(model(x_adv), y)
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-6)
    assert 0.0 <= stats["clean_acc"] <= 1.0 and 0.0 <= stats["adv_acc"] <= 1.0
    loss.backward()
    assert model.module.weight.grad is not None


def test_fgsm_at_default_is_goodfellow_mnist_setting():
    d = advframe.get_defense("fgsm_at")
    assert (d.alpha, d.eps) == (0.5, 0.25)
    with pytest.raises(ParameterError):
        advframe.get_defense("fgsm_at", alpha=1.5)


@pytest.mark.parametrize("attack", ["step_ll", "fgsm", "fgsm_pred"])
def test_mixed_batch_loss_is_kurakin_weighted_mean(attack):
    model, x, y, data = linear_training_problem(n=32)
    d = advframe.get_defense("mixed_batch", preset="mnist", k=16, lam=0.3, attack=attack)
    d.setup(model, data, {"seed": 5, "batch_size": 32})
    step = 7
    loss, stats = d.training_loss(model, x, y, step)
    eps = truncated_half_normal(16, 0.15, 0.3, step_generator(5, step))
    one = advframe.get_attack(attack)
    rows = []
    for i in range(32):  # every example on its own, with its own eps: the definition
        if i < 16:
            t = ThreatModel(eps=float(eps[i]), bounds=(0.0, 1.0))
            rows.append(one(model, x[i:i + 1], y[i:i + 1], t))
        else:
            rows.append(x[i:i + 1])
    mixed = torch.cat(rows)
    with torch.no_grad():
        per = F.cross_entropy(model(mixed), y, reduction="none")
        expected = (per[16:].sum() + 0.3 * per[:16].sum()) / ((32 - 16) + 0.3 * 16)
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    assert stats["adv_examples"] == 16
    assert float((mixed[:16] - x[:16]).abs().amax()) <= 0.3 + 1e-6


def test_mixed_batch_delay_and_partial_batch():
    model, x, y, data = linear_training_problem(n=20)
    d = advframe.get_defense("mixed_batch", k=16, delay=3)
    d.setup(model, data, {"seed": 0, "batch_size": 32})
    loss, stats = d.training_loss(model, x, y, 2)  # still in the delay: all clean
    assert stats["adv_examples"] == 0
    assert float(loss.detach()) == pytest.approx(float(F.cross_entropy(model(x), y).detach()), rel=1e-6)
    _, stats = d.training_loss(model, x, y, 3)  # 20 of m = 32: round(16·20/32) = 10 adversarial
    assert stats["adv_examples"] == 10
    with pytest.raises(ParameterError):
        advframe.get_defense("mixed_batch", k=40).setup(model, data, {"batch_size": 32})
    with pytest.raises(ParameterError):
        advframe.get_defense("mixed_batch", attack="pgd").setup(model, data, {"batch_size": 32})


def test_truncated_half_normal_matches_its_distribution():
    sigma, eps_max = 0.15, 0.3
    e = truncated_half_normal(200_000, sigma, eps_max, torch.Generator().manual_seed(0))
    assert float(e.min()) >= 0.0 and float(e.max()) <= eps_max
    # mean of |N(0, σ)| conditioned on [0, a]: σ·√(2/π)·(1 − exp(−a²/2σ²)) / erf(a/(σ√2))
    a = eps_max
    mean = sigma * math.sqrt(2 / math.pi) * (1 - math.exp(-a * a / (2 * sigma * sigma))) / math.erf(a / (sigma * math.sqrt(2)))
    assert float(e.mean()) == pytest.approx(mean, rel=5e-3)
    assert truncated_half_normal(5, 0.0, 0.3, torch.Generator()).eq(0).all()


def test_pgd_at_trains_on_pgd_points_inside_the_ball():
    model, x, y, data = linear_training_problem()
    d = advframe.get_defense("pgd_at", eps=0.1, steps=5, step_size=0.05, ramp_epochs=0)
    d.setup(model, data, {"seed": 3})
    loss, stats = d.training_loss(model, x, y, 4)
    x_adv = d.adversary(4).attack(model, x, y, d.threat)  # the same seeded adversary
    assert ThreatModel(eps=0.1).audit(x_adv, x).ok
    with torch.no_grad():
        expected = F.cross_entropy(model(x_adv), y)
        clean = F.cross_entropy(model(x), y)
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-6)
    assert float(loss.detach()) > float(clean)  # the inner maximisation raised the loss
    assert set(stats) >= {"clean_acc", "adv_acc"}


def test_pgd_at_eps_warm_up_grows_linearly_to_eps():
    model, x, y, data = linear_training_problem()
    d = advframe.get_defense("pgd_at", eps=0.2, steps=4, step_size=0.1, ramp_epochs=2.0, random_start=False)
    d.setup(model, data, {"seed": 3, "steps_per_epoch": 2})  # a warm-up of 2 epochs of 2 steps
    assert [d.ramp(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    for step, radius in ((0, 0.05), (1, 0.1), (5, 0.2)):
        loss, _ = d.training_loss(model, x, y, step)
        # the loss is that of PGD points in the ball of radius eps·ramp, with the step scaled alike
        x_adv = d.adversary(step).attack(model, x, y, d.threat.with_eps(radius))
        assert float((x_adv - x).abs().max()) == pytest.approx(radius, abs=1e-6)
        with torch.no_grad():
            assert float(loss.detach()) == pytest.approx(float(F.cross_entropy(model(x_adv), y)), rel=1e-6)
    with pytest.raises(ParameterError, match="ramp_epochs=-1"):
        advframe.get_defense("pgd_at", ramp_epochs=-1)


def test_ensemble_at_uses_static_source_and_formula(tmp_path):
    model, x, y, data = linear_training_problem()
    static = as_model(nn.Linear(10, 4))
    advframe.save_checkpoint(tmp_path / "static.safetensors", {f"model.{k}": v for k, v in static.state_dict().items()},
                             {"model": "toy_linear"})
    d = advframe.get_defense("ensemble_at", eps=0.1, lam=0.5)
    d.setup(model, data, {})
    d.static_models = [static]  # the checkpoint's architecture is not registered: inject it
    loss, _ = d.training_loss(model, x, y, 0)
    with torch.no_grad():
        pred = static(x).argmax(1)
        ll = static(x).argmin(1)
        fgsm_pred = (x + 0.1 * ce_grad_x(static, x, pred).sign()).clamp(0, 1)
        step_ll = (x - 0.1 * ce_grad_x(static, x, ll).sign()).clamp(0, 1)
        per = [F.cross_entropy(model(z), y, reduction="sum") for z in (x, fgsm_pred, step_ll)]
        expected = (per[0] + 0.5 * (per[1] + per[2])) / (32 * (1 + 0.5 * 2))
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    assert d.source(model, 1) is static  # static models only (adversarial networks §4.4)
    d.include_current = True
    assert d.source(model, 1) is model


def test_ensemble_at_loads_registered_sources():
    model, x, y, data = linear_training_problem()
    d = advframe.get_defense("ensemble_at", sources="mnist_cnn")
    d.setup(model, data, {})
    assert len(d.static_models) == 1
    assert not any(p.requires_grad for p in d.static_models[0].parameters())


@pytest.mark.slow
def test_label_leaks_counted_for_fgsm_on_fgsm_at_model():
    """Kurakin §4.2: an FGSM-trained model is evaluated with FGSM and with its predicted-label twin."""
    data = advframe.load_dataset("mnist5k", split="train").take(1000)
    result = advframe.train("mnist_cnn", data, defense="fgsm_at", defense_params={"eps": 0.3}, epochs=1,
                            batch_size=50, lr=0.05, seed=0)
    model = result.model.eval()
    test = advframe.load_dataset("mnist5k", split="test").take(400)
    res = advframe.evaluate(model, test, attacks=["fgsm"], eps=[0.3], batch_size=200)
    run = res.run("fgsm", 0.3)
    fgsm = advframe.get_attack("fgsm")
    threat = ThreatModel(eps=0.3)
    with torch.no_grad():
        pred = model(test.x).argmax(1)
    true_ok = model(fgsm(model, test.x, test.y, threat)).argmax(1) == test.y
    twin_ok = model(fgsm(model, test.x, pred, threat)).argmax(1) == test.y
    assert run.label_leaks == int((true_ok & ~twin_ok).sum())
    assert run.label_leaks is not None and run.label_leaks >= 0
