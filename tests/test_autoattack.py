"""The AutoAttack plugin (advframe_autoattack): APGD-CE/-DLR/-T, FAB-T and Square against
closed forms on affine models, the papers' schedules, exact pass counts, the conformance
kit, the threat audit, class-count errors and the plugin's dependency on advframe_gradient."""

from __future__ import annotations

import functools
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import advframe
from advframe.errors import AdvframeError, ParameterError
from advframe.model import Classifier
from advframe.plugins import PluginHost
from advframe.testing import check_attack, toy_model
from advframe.threat import ThreatModel
from advframe_autoattack.apgd import checkpoints
from advframe_autoattack._square_ops import p_schedule, side
from advframe_autoattack.apgd_attacks import APGDCE, APGDDLR, APGDT
from advframe_autoattack.square import Square
from advframe_gradient.losses import dlr_loss, margin_loss, targeted_dlr_loss

D = 12


class Counting(Classifier):
    """A logits classifier counting forward calls, rows forwarded and backward passes."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.forwards = 0
        self.rows = 0
        self.backwards = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards += 1
        self.rows += x.shape[0]
        out = self.inner(x)
        if out.requires_grad:
            out.register_hook(self._count)
        return out

    def _count(self, grad: torch.Tensor) -> None:
        self.backwards += 1


def affine(classes: int, seed: int = 0, d: int = D) -> tuple[nn.Linear, Counting]:
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(d, classes)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(classes, d, generator=g))
        lin.bias.zero_()
    return lin, Counting(lin).eval()


def inputs(n: int = 8, seed: int = 1, d: int = D) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=g) - 0.5


# -- losses --------------------------------------------------------------------------
def test_losses_match_the_papers_formulas():
    z = torch.tensor([[3.0, 1.0, 2.0, -1.0, 0.5], [0.0, 4.0, 1.0, 2.0, 3.0]])
    y = torch.tensor([0, 2])
    assert torch.allclose(margin_loss(z, y), torch.tensor([2.0 - 3.0, 4.0 - 1.0]))
    # DLR = -(z_y - max_{i!=y} z_i) / (z_pi1 - z_pi3)
    assert torch.allclose(dlr_loss(z, y), torch.tensor([-(3 - 2) / (3 - 1.0), -(1 - 4) / (4 - 2.0)]))
    t = torch.tensor([4, 3])
    # targeted DLR = -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)
    want = torch.tensor([-(3 - 0.5) / (3 - (1.0 + 0.5) / 2), -(1 - 2) / (4 - (2 + 1) / 2)])
    assert torch.allclose(targeted_dlr_loss(z, y, t), want)
    # DLR is invariant to shifting and rescaling the scores
    assert torch.allclose(dlr_loss(7 * z - 3, y), dlr_loss(z, y), atol=1e-6)


def test_losses_refuse_too_few_classes():
    z = torch.zeros(2, 3)
    y = torch.zeros(2, dtype=torch.long)
    with pytest.raises(ParameterError, match="at least 4 classes, the model has 3"):
        targeted_dlr_loss(z, y, y + 1)
    with pytest.raises(ParameterError, match="at least 3 classes, the model has 2"):
        dlr_loss(z[:, :2], y)


# -- APGD --------------------------------------------------------------------------
def test_checkpoints_follow_the_papers_recursion():
    # p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)
    p = [0.0, 0.22]
    while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    assert checkpoints(100) == [round(q * 100) for q in p[1:]] == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(10) == [2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert checkpoints(0) == []


def binary_far_from_boundary(norm: str, eps: float) -> tuple[Counting, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 2-class affine model whose worst point in the eps-ball is still class 0, and
    the closed-form maximum of the cross-entropy: softplus(v·x + b + eps ||v||_dual)."""
    lin, model = affine(2)
    x = inputs()
    y = torch.zeros(x.shape[0], dtype=torch.long)
    v = (lin.weight[1] - lin.weight[0]).detach()
    dual = v.abs().sum() if norm == "linf" else v.norm()
    b = -float((x @ v + eps * dual).max()) - 1.0
    with torch.no_grad():
        lin.bias.copy_(torch.tensor([0.0, b]))
    return model, x, y, F.softplus(x @ v + b + eps * dual)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_apgd_ce_reaches_the_closed_form_maximum_of_the_ball(norm):
    eps = 0.1
    model, x, y, best = binary_far_from_boundary(norm, eps)
    threat = ThreatModel(norm=norm, eps=eps, bounds=(-10.0, 10.0))
    attack = APGDCE()
    x_adv = attack(model, x, y, threat)
    got = model.loss(model(x_adv), y).detach()
    assert torch.allclose(got, best, rtol=1e-5, atol=1e-7), (got - best).abs().max()
    assert threat.audit(x_adv, x).ok
    # never fooled: one clean forward query and exactly steps + 1 gradient evaluations
    assert attack.gradient_evaluations == 101 and attack.forward_queries == 1


def test_apgd_without_enough_steps_falls_short_of_the_maximum():
    """The closed-form check can fail: a 0-step run stays at its random start."""
    eps = 0.1
    model, x, y, best = binary_far_from_boundary("l2", eps)
    threat = ThreatModel(norm="l2", eps=eps, bounds=(-10.0, 10.0))
    x_adv = APGDCE(steps=0)(model, x, y, threat)
    assert (model.loss(model(x_adv), y).detach() < best - 1e-4).all()


def test_apgd_restarts_and_early_stops_count_exactly():
    eps = 0.1
    model, x, y, _ = binary_far_from_boundary("linf", eps)
    threat = ThreatModel(norm="linf", eps=eps, bounds=(-10.0, 10.0))
    attack = APGDCE(steps=7, restarts=3)
    model.backwards = 0
    attack(model, x, y, threat)
    assert attack.gradient_evaluations == model.backwards == 3 * 8
    # a huge eps fools every example at its first step: 2 gradient evaluations, 1 run
    big = ThreatModel(norm="linf", eps=2.0, bounds=(-10.0, 10.0))
    x_adv = attack(model, x, y, big)
    assert (model.predict(model(x_adv)) != y).all()
    assert attack.gradient_evaluations <= 2 and attack.forward_queries == 1


def test_apgd_targeted_reaches_the_target():
    _, model = affine(5, seed=2)
    x = inputs(seed=3)
    y = model.predict(model(x)).detach()
    target = (y + 1) % 5
    threat = ThreatModel(norm="linf", eps=3.0, bounds=(-10.0, 10.0), targeted=True)
    x_adv = APGDCE(steps=20)(model, x, y, threat, target)
    assert torch.equal(model.predict(model(x_adv)), target)


@pytest.mark.parametrize("cls", [APGDDLR, APGDT])
def test_dlr_attacks_break_a_linear_model_at_large_eps(cls):
    _, model = affine(6, seed=4)
    x = inputs(seed=5)
    y = model.predict(model(x)).detach()
    threat = ThreatModel(norm="l2", eps=5.0, bounds=(-10.0, 10.0))
    attack = cls(steps=10)
    x_adv = attack(model, x, y, threat)
    assert threat.audit(x_adv, x).ok
    assert (model.predict(model(x_adv)) != y).all()


def test_apgd_t_attacks_top_k_targets_on_the_still_robust():
    _, model = affine(6, seed=4)
    x = inputs(seed=5)
    y = model.predict(model(x)).detach()
    threat = ThreatModel(norm="linf", eps=1e-4, bounds=(-10.0, 10.0))  # nothing breaks
    attack = APGDT(steps=4)
    attack(model, x, y, threat)
    # k = min(9, 6 - 1) = 5 targets, each one run of steps + 1 gradient evaluations
    assert attack.gradient_evaluations == 5 * 5 and attack.forward_queries == 1
    attack = APGDT(steps=4, n_target_classes=2)
    attack(model, x, y, threat)
    assert attack.gradient_evaluations == 2 * 5


def test_apgd_ce_uses_the_models_own_loss():
    class MSE(Classifier):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(D, 4)

        def forward(self, x):
            return self.lin(x)

        def loss(self, outputs, y):
            return (outputs - F.one_hot(y, 4).float()).pow(2).sum(dim=1)

    torch.manual_seed(0)
    model = MSE().eval()
    x = inputs()
    y = model.predict(model(x)).detach()
    threat = ThreatModel(norm="l2", eps=0.05, bounds=(-10.0, 10.0))
    x_adv = APGDCE(steps=30)(model, x, y, threat)
    # the MSE loss is convex in x: its maximum over the ball is at least the
    # first-order gain eps * ||grad||_2 above the clean loss
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model.loss(model(xg), y).sum(), xg)
    gain = model.loss(model(x_adv), y) - model.loss(model(x), y)
    fooled = model.predict(model(x_adv)) != y
    assert ((gain >= 0.05 * g.norm(dim=1) - 1e-5) | fooled).all()


# -- Square --------------------------------------------------------------------------
def test_square_schedule_halves_p_at_the_papers_iterations():
    # on the paper's 10,000-query scale p is halved after 10, 50, 200, 500, ..., 8000
    assert [p_schedule(i, 10000, 0.8) for i in (0, 10, 11, 50, 51, 200, 201, 8000, 8001, 9999)] == \
        [0.8, 0.8, 0.4, 0.4, 0.2, 0.2, 0.1, 0.8 / 256, 0.8 / 512, 0.8 / 512]
    # rescaled to 5,000 queries: the first halving after iteration 5
    assert [p_schedule(i, 5000, 0.8) for i in (5, 6, 25, 26)] == [0.8, 0.4, 0.4, 0.2]
    # MNIST: a square covering p = 0.8 of 28 x 28 pixels has side round(sqrt(0.8 * 784)) = 25
    assert side(0.8, 784, 1, 1, 28) == 25
    assert side(0.8 / 512, 784, 1, 3, 28, odd=True) == 3


def image_model(seed: int = 3) -> tuple[Counting, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = Counting(nn.Sequential(nn.Flatten(), nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, 5))).eval()
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(12, 1, 8, 8, generator=g)
    y = model.predict(model(x)).detach()
    y[:2] = (y[:2] + 1) % 5  # two examples misclassified from the start
    return model, x, y


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_square_query_count_is_exact(norm):
    model, x, y = image_model()
    queries = 40
    threat = ThreatModel(norm=norm, eps=1e-4)  # too small to fool anyone
    attack = Square(queries=queries, seed=0)
    model.forwards = model.rows = model.backwards = 0
    x_adv = attack(model, x, y, threat)
    assert threat.audit(x_adv, x).ok
    assert torch.equal(model.predict(model(x_adv))[2:], y[2:])
    # one clean pass, one at the start point, one per iteration; no gradient at all
    assert attack.forward_queries == model.forwards - 1 == queries + 2
    assert attack.gradient_evaluations == 0 and model.backwards == 0
    # per example: the misclassified pay the clean pass only, the others queries + 2
    assert attack.example_queries.tolist() == [1, 1] + [queries + 2] * 10
    assert int(attack.example_queries.sum()) == model.rows - x.shape[0]
    assert torch.equal(x_adv[:2], x[:2])


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_square_stops_each_example_once_fooled(norm):
    model, x, y = image_model()
    queries = 200
    threat = ThreatModel(norm=norm, eps=0.5 if norm == "linf" else 4.0)
    attack = Square(queries=queries, seed=1)
    model.forwards = model.rows = 0
    x_adv = attack(model, x, y, threat)
    fooled = model.predict(model(x_adv)) != y
    assert threat.audit(x_adv, x).ok and fooled.float().mean() > 0.5
    spent = attack.example_queries
    assert int(spent.sum()) == model.rows - x.shape[0]
    assert (spent[~fooled] == queries + 2).all() and (spent[fooled] < queries + 2).all()
    assert attack.forward_queries == model.forwards - 1 == int(spent.max())


def test_square_refuses_flat_inputs():
    _, model = affine(3)
    with pytest.raises(ParameterError, match="image-shaped"):
        Square(queries=2)(model, inputs(), torch.zeros(8, dtype=torch.long), ThreatModel(eps=0.1))


# -- class counts ------------------------------------------------------------------
def test_class_count_errors_name_both_numbers():
    x = inputs(4)
    threat = ThreatModel(norm="linf", eps=0.1, bounds=(-10.0, 10.0))
    y = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ParameterError, match=r"apgd_dlr.*at least 3 classes, the model has 2"):
        APGDDLR(steps=2)(affine(2)[1], x, y, threat)
    with pytest.raises(ParameterError, match=r"apgd_t.*at least 4 classes, the model has 3"):
        APGDT(steps=2)(affine(3)[1], x, y, threat)
    with pytest.raises(ParameterError, match=r"n_target_classes=5 needs at least 6 classes, the model has 4"):
        APGDT(steps=2, n_target_classes=5)(affine(4)[1], x, y, threat)


def test_bad_parameters_are_refused():
    for bad in ({"steps": -1}, {"restarts": 0}, {"n_target_classes": 0}, {"seed": 1.5}):
        with pytest.raises(ParameterError):
            APGDT(**bad)


# -- conformance and audit ---------------------------------------------------------
FAST = {
    "apgd_ce": {"steps": 8},
    "apgd_dlr": {"steps": 8},
    "apgd_t": {"steps": 5, "n_target_classes": 3},
    "square": {"queries": 60},
}


@pytest.mark.parametrize("name", sorted(FAST))
def test_conformance_kit(name):
    check_attack(functools.partial(advframe.get_attack, name, **FAST[name]), check_devices=["cpu"])


@pytest.mark.parametrize("name", sorted(FAST))
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_threat_audit_on_images(name, norm):
    model = toy_model((1, 8, 8), 10, seed=3)
    g = torch.Generator().manual_seed(4)
    x = torch.rand(16, 1, 8, 8, generator=g)
    y = model.predict(model(x)).detach()
    threat = ThreatModel(norm=norm, eps=0.3 if norm == "linf" else 1.5)
    attack = advframe.get_attack(name, **FAST[name])
    x_adv = attack(model, x, y, threat)
    assert threat.audit(x_adv, x).ok
    assert (model.predict(model(x_adv)) != y).float().mean() > 0.5


# -- plugin ------------------------------------------------------------------------
def test_registered_names():
    for name in ("apgd_ce", "apgd_dlr", "apgd_t", "square"):
        assert advframe.get_attack(name).name == name
    assert advframe.get_attack("square").black_box


def test_missing_gradient_plugin_fails_registration_in_one_line(monkeypatch):
    import advframe_autoattack.plugin as plugin

    monkeypatch.setitem(sys.modules, "advframe_gradient.losses", None)
    monkeypatch.delenv("ADVFRAME_STRICT_PLUGINS", raising=False)
    with pytest.raises(AdvframeError, match="needs the plugin 'gradient'"):
        plugin.register_attacks(register=lambda attack: None)
    host = PluginHost()
    info = host.add(plugin, "autoattack")
    assert info.status == "error" and len(info.errors) == 1
    assert "needs the plugin 'gradient'" in info.errors[0] and "\n" not in info.errors[0]
