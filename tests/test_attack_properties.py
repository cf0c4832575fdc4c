"""Property tests: every gradient attack stays inside the threat model, for random
inputs, bounds, eps (including 0), both norms it supports, targeted or not; and PGD
grows stronger with eps."""

from __future__ import annotations

import pytest
import torch
from advframe_gradient.plugin import ATTACKS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import advframe
from advframe.threat import ThreatModel

CLASSES = 5
# small step counts keep the property runs fast; the schedules are tested elsewhere
FAST = {"iter_basic": {"steps": 3}, "iter_ll": {"steps": 3}, "pgd": {"steps": 2, "restarts": 2},
        "mim": {"steps": 3}}
CASES = [(cls, norm, targeted) for cls in ATTACKS for norm in cls.norms
         for targeted in ((False, True) if cls.targetable else (False,))]


def tiny_mlp(seed: int, d: int) -> nn.Module:
    torch.manual_seed(seed)
    return advframe.as_model(nn.Sequential(nn.Flatten(), nn.Linear(d, 8), nn.Tanh(), nn.Linear(8, CLASSES))).eval()


@pytest.mark.parametrize("cls,norm,targeted", CASES,
                         ids=[f"{c.name}-{n}-{'t' if t else 'u'}" for c, n, t in CASES])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), n=st.integers(1, 6), eps=st.one_of(st.just(0.0), st.floats(1e-4, 2.0)),
       bounds=st.sampled_from([(0.0, 1.0), (-1.0, 1.0), (0.0, 255.0)]), clamp_corner=st.booleans())
def test_output_stays_in_threat_model(cls, norm, targeted, seed, n, eps, bounds, clamp_corner):
    lo, hi = bounds
    # float32 cannot resolve the audit's absolute tolerance (1e-5) on [0, 255]: use float64 there
    dtype = torch.float64 if hi > 10 else torch.float32
    g = torch.Generator().manual_seed(seed)
    x = lo + (hi - lo) * torch.rand(n, 2, 3, generator=g, dtype=dtype)
    if clamp_corner:  # inputs sitting on the bounds
        x[:, 0, 0] = lo
        x[:, 1, 2] = hi
    y = torch.randint(0, CLASSES, (n,), generator=g)
    target = torch.randint(0, CLASSES, (n,), generator=g) if targeted else None
    threat = ThreatModel(norm, eps * (hi - lo), bounds, targeted=targeted)
    model = tiny_mlp(seed % 7, 6).to(dtype)
    attack = cls(**FAST.get(cls.name, {}))
    x_adv = attack(model, x, y, threat, target)
    assert x_adv.shape == x.shape
    report = threat.audit(x_adv, x)
    assert report.violations == 0, (report.max_excess, report.nonfinite)
    if eps == 0:
        torch.testing.assert_close(x_adv, x)
    threats = [threat, threat.with_eps(threat.eps / 2), threat.with_eps(0.0)]
    grid = attack.grid(model, x, y, threats, target)
    for t, c in zip(threats, grid):
        assert c.x_adv.shape == x.shape and t.audit(c.x_adv, x).violations == 0
    if any(c.shared for c in grid):  # a shared one-step grid costs one gradient in all
        assert sum(c.gradient_evaluations for c in grid) == pytest.approx(1 if eps > 0 else 0)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_loss_and_accuracy_monotone_in_eps(norm):
    model = tiny_mlp(3, 12)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 12, generator=g)
    with torch.no_grad():
        y = model(x).argmax(dim=1)  # start from 100% accuracy
    scale = 1.0 if norm == "linf" else 3.0
    grid = [0.0, 0.05, 0.15, 0.4, 0.8]
    losses, accuracies = [], []
    for eps in grid:
        attack = advframe.get_attack("pgd", steps=10, seed=0, random_start=False)
        x_adv = attack(model, x, y, ThreatModel(norm, eps * scale, (0.0, 1.0)))
        with torch.no_grad():
            out = model(x_adv)
        losses.append(float(model.loss(out, y).mean()))
        accuracies.append(float((out.argmax(dim=1) == y).float().mean()))
    assert all(b >= a - 1e-6 for a, b in zip(losses, losses[1:])), losses
    assert all(b <= a for a, b in zip(accuracies, accuracies[1:])), accuracies
    assert accuracies[0] == 1.0 and accuracies[-1] < 0.5


def test_targeted_pgd_reaches_the_target_more_often_than_clean():
    model = tiny_mlp(4, 12)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(64, 12, generator=g)
    target = torch.randint(0, CLASSES, (64,), generator=g)
    threat = ThreatModel("linf", 0.5, (0.0, 1.0), targeted=True)
    x_adv = advframe.get_attack("pgd", steps=30, seed=0)(model, x, target, threat, target)
    with torch.no_grad():
        before = (model(x).argmax(1) == target).float().mean()
        after = (model(x_adv).argmax(1) == target).float().mean()
    assert after > before + 0.3
