import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from advframe import ThreatModel
from advframe.errors import ThreatModelError
from advframe.threat import parse_eps


@pytest.mark.parametrize("bad", [dict(eps=-0.1), dict(eps=math.nan), dict(eps=math.inf), dict(norm="l3"),
                                 dict(bounds=(1.0, 0.0)), dict(bounds=(0.0, math.nan))])
def test_validation_refuses_bad_values(bad):
    with pytest.raises(ThreatModelError):
        ThreatModel(**bad)


def test_parse_eps_reads_fractions_and_refuses_junk():
    assert parse_eps("8/255") == pytest.approx(8 / 255)
    assert parse_eps("0.3") == 0.3
    for bad in ("nan", "-1", "abc", "1/0", "inf"):
        with pytest.raises(ThreatModelError):
            parse_eps(bad)


def test_round_trip_and_frozen():
    t = ThreatModel(norm="l2", eps=1.5, bounds=(-1, 1), targeted=True)
    assert ThreatModel.from_dict(t.to_dict()) == t
    with pytest.raises(Exception):
        t.eps = 2.0  # type: ignore[misc]


@settings(max_examples=40, deadline=None)
@given(norm=st.sampled_from(["linf", "l2"]), eps=st.floats(0, 3), scale=st.floats(0.01, 10),
       seed=st.integers(0, 10_000))
def test_project_lands_inside_and_audit_agrees(norm, eps, scale, seed):
    g = torch.Generator().manual_seed(seed)
    t = ThreatModel(norm=norm, eps=eps)
    x = torch.rand(5, 3, 4, 4, generator=g)
    x_adv = x + scale * torch.randn(5, 3, 4, 4, generator=g)
    p = t.project(x_adv, x)
    report = t.audit(p, x)
    assert report.ok, report
    assert float(report.max_perturbation) <= eps + 1e-5
    assert p.min() >= 0 and p.max() <= 1


def test_linf_projection_is_the_nearest_point():
    t = ThreatModel(norm="linf", eps=0.1)
    x = torch.full((1, 4), 0.5)
    x_adv = torch.tensor([[0.9, 0.45, 0.0, 0.55]])
    assert torch.allclose(t.project(x_adv, x), torch.tensor([[0.6, 0.45, 0.4, 0.55]]))


def test_audit_counts_ball_box_and_nonfinite_violations():
    t = ThreatModel(norm="linf", eps=0.1)
    x = torch.full((4, 3), 0.5)
    x_adv = x.clone()
    x_adv[1, 0] = 0.7            # outside the ball by 0.1
    x_adv[2, 0] = float("nan")   # not finite
    x_adv[3] = 0.55              # fine
    r = t.audit(x_adv, x)
    assert r.violations == 2 and r.nonfinite == 1
    r2 = ThreatModel(norm="linf", eps=1.0).audit(x + 0.9, x)   # inside ball, outside bounds
    assert r2.violations == 4 and r2.max_excess == pytest.approx(0.4, abs=1e-6)


def test_l2_audit_uses_the_euclidean_norm():
    t = ThreatModel(norm="l2", eps=0.5)
    x = torch.full((1, 4), 0.5)
    assert t.audit(x + torch.tensor([[0.2, 0.2, 0.2, 0.2]]), x).ok          # norm 0.4
    assert not t.audit(x + torch.tensor([[0.3, 0.3, 0.3, 0.0]]), x).ok      # norm 0.52


def test_audit_tolerance_scales_with_the_input_range():
    t = ThreatModel(norm="linf", eps=8.0, bounds=(0.0, 255.0))
    x = torch.full((1, 3), 200.0)
    rounding = x + torch.tensor([[8.0, -8.0, 8.0]]) + 1.5e-5   # float32 rounding near 200
    assert t.audit(rounding, x).ok
    assert not t.audit(x + 8.1, x).ok


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_an_empty_batch_projects_measures_and_audits_to_empty(norm):
    threat = ThreatModel(norm=norm, eps=0.3)
    x = torch.rand(0, 1, 28, 28)
    assert threat.project(x, x).shape == (0, 1, 28, 28)
    assert threat.perturbation(x, x).shape == (0,)
    report = threat.audit(x, x)
    assert report.ok and report.violations == 0 and report.perturbation.shape == (0,)
