"""The AutoAttack plugin (advframe_autoattack): APGD-CE/-DLR/-T, FAB-T and Square against
closed forms on affine models, the papers' schedules, exact pass counts, the threat audit,
class-count errors and the plugin's dependency on advframe_gradient (the conformance kit
runs in test_conformance.py)."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import advframe
from advframe.errors import ParameterError
from advframe.model import Classifier
from advframe.plugins import PluginHost
from advframe.testing import CountingModel, toy_model
from advframe.threat import ThreatModel
from advframe_autoattack.apgd import checkpoints
from advframe_autoattack._square_ops import p_schedule, side
from advframe_autoattack._hyperplane import project_hyperplane
from advframe_autoattack.apgd_attacks import APGDCE, APGDDLR, APGDT
from advframe_autoattack.fab import FABT
from advframe_autoattack.square import Square
from advframe_gradient.losses import dlr_loss, margin_loss, targeted_dlr_loss
from tests.helpers import FAST_ATTACK_PARAMS

D = 12


def affine(classes: int, seed: int = 0, d: int = D) -> tuple[nn.Linear, CountingModel]:
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(d, classes)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(classes, d, generator=g))
        lin.bias.zero_()
    return lin, CountingModel(lin).eval()


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


def binary_far_from_boundary(norm: str, eps: float) -> tuple[CountingModel, torch.Tensor, torch.Tensor, torch.Tensor]:
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
    model.reset()
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


# -- FAB ---------------------------------------------------------------------------
def binary_affine() -> tuple[CountingModel, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 2-class affine model: f(x) = (w_1 - w_0)·x + (b_1 - b_0), its inputs and predictions."""
    lin, model = affine(2, seed=5)
    with torch.no_grad():
        lin.bias.copy_(torch.tensor([0.3, -0.2]))
    x = inputs(seed=6)
    y = model.predict(model(x)).detach()
    v = (lin.weight[1] - lin.weight[0]).detach()
    f = (x @ v + (lin.bias[1] - lin.bias[0])).detach()
    return model, x, y, v, f


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_hyperplane_projection_has_the_closed_form_away_from_the_box(norm):
    g = torch.Generator().manual_seed(0)
    p, w, b = torch.rand(5, 7, generator=g), torch.randn(5, 7, generator=g), torch.randn(5, generator=g)
    c = (b - (w * p).sum(dim=1)).unsqueeze(1)
    want = c * w / w.pow(2).sum(dim=1, keepdim=True) if norm == "l2" else c * w.sign() / w.abs().sum(dim=1, keepdim=True)
    assert torch.allclose(project_hyperplane(p, w, b, -100.0, 100.0, norm), want, atol=1e-6)
    # inside the box [0, 1] the step stays in the box and still reaches the plane when it can
    d = project_hyperplane(p, w, b, 0.0, 1.0, norm)
    z = p + d
    assert z.min() >= -1e-6 and z.max() <= 1 + 1e-6
    reachable = (w.clamp_min(0).sum(1) >= b) & (w.clamp_max(0).sum(1) <= b)
    assert torch.allclose((w * z).sum(dim=1)[reachable], b[reachable], atol=1e-5)


def test_hyperplane_projection_in_a_box_moves_free_coordinates_only():
    # l2 onto x_1 + x_2 = 1.5 from (1, 0) in [0, 1]^2: x_1 is at its bound, so only x_2 moves
    d = project_hyperplane(torch.tensor([[1.0, 0.0]]), torch.ones(1, 2), torch.tensor([1.5]), 0.0, 1.0, "l2")
    assert torch.allclose(d, torch.tensor([[0.0, 0.5]]))
    # linf onto x_1 + x_2 = 1.8 from (0.9, 0): the saturated x_1 moves 0.1, x_2 the remaining 0.8
    d = project_hyperplane(torch.tensor([[0.9, 0.0]]), torch.ones(1, 2), torch.tensor([1.8]), 0.0, 1.0, "linf")
    assert torch.allclose(d, torch.tensor([[0.1, 0.8]]))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fab_finds_the_minimal_distance_of_an_affine_classifier(norm):
    model, x, y, v, f = binary_affine()
    minimal = f.abs() / (v.abs().sum() if norm == "linf" else v.norm())
    threat = ThreatModel(norm=norm, eps=10.0, bounds=(-10.0, 10.0))
    # with a final bisection: the minimal distance to 1e-3, on the other side
    x_adv = FABT(final_search=20)(model, x, y, threat)
    dist = threat.perturbation(x_adv, x)
    assert torch.allclose(dist, minimal, rtol=1e-3), (dist / minimal - 1).abs().max()
    assert (model.predict(model(x_adv)) != y).all()
    step = x_adv - x  # along -sign(f) w (l2) or -sign(f) sign(w) (linf)
    direction = -f.sign().unsqueeze(1) * (v if norm == "l2" else v.sign())
    assert (F.cosine_similarity(step, direction, dim=1) > 1 - 1e-5).all()
    # the reference algorithm alone: adversarial, and at most 1 % above the minimum
    attack = FABT()
    x_adv = attack(model, x, y, threat)
    ratio = threat.perturbation(x_adv, x) / minimal
    assert (model.predict(model(x_adv)) != y).all()
    assert (ratio > 1 - 1e-5).all() and (ratio < 1.01).all()
    # k = min(9, 2 - 1) = 1 target: 100 gradients, 1 + 100 forward queries
    assert attack.gradient_evaluations == 100 and attack.forward_queries == 101


def test_fab_keeps_the_clean_input_when_the_minimal_point_is_outside_the_ball():
    model, x, y, v, f = binary_affine()
    minimal = f.abs() / v.norm()
    eps = float(minimal.median())
    threat = ThreatModel(norm="l2", eps=eps, bounds=(-10.0, 10.0))
    x_adv = FABT(final_search=20)(model, x, y, threat)
    far = minimal > eps * 1.001
    near = minimal < eps * 0.999
    assert torch.equal(x_adv[far], x[far])
    assert (model.predict(model(x_adv))[near] != y[near]).all()
    assert threat.audit(x_adv, x).ok


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fab_spends_steps_gradients_per_target_and_restart(norm):
    _, model = affine(5, seed=7)
    x = inputs(seed=8)
    y = model.predict(model(x)).detach()
    # nothing breaks, so each run hands back no point to project (an empty batch: l2 used to raise)
    threat = ThreatModel(norm=norm, eps=1e-5, bounds=(-10.0, 10.0))
    attack = FABT(steps=6, restarts=2, n_target_classes=3, final_search=4)
    model.reset()
    x_adv = attack(model, x, y, threat)
    assert torch.equal(x_adv, x)
    assert attack.gradient_evaluations == model.backwards == 3 * 2 * 6
    assert attack.forward_queries == model.forwards - model.backwards == 1 + 3 * 2 * (6 + 4)


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


def image_model(seed: int = 3) -> tuple[CountingModel, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = CountingModel(nn.Sequential(nn.Flatten(), nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, 5))).eval()
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
    model.reset()
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
    model.reset()
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
    with pytest.raises(ParameterError, match=r"fab_t.*n_target_classes=2 needs at least 3 classes, the model has 2"):
        FABT(steps=2, n_target_classes=2)(affine(2)[1], x, y, threat)


def test_bad_parameters_are_refused():
    for bad in ({"steps": -1}, {"restarts": 0}, {"n_target_classes": 0}, {"seed": 1.5}):
        with pytest.raises(ParameterError):
            APGDT(**bad)
        with pytest.raises(ParameterError):
            FABT(**bad)
    for bad in ({"eta": 0.5}, {"beta": 2.0}, {"alpha_max": -0.1}, {"final_search": -1}):
        with pytest.raises(ParameterError):
            FABT(**bad)
    for bad in ({"queries": -1}, {"p_init": 0.0}, {"p_init": 1.5}):
        with pytest.raises(ParameterError):
            Square(**bad)


# -- threat audit ----------------------------------------------------------------------
FAST = {name: FAST_ATTACK_PARAMS[name] for name in ("apgd_ce", "apgd_dlr", "apgd_t", "square", "fab_t")}


@pytest.mark.parametrize("name", sorted(FAST))
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_threat_audit_on_images(name, norm):
    model = toy_model((1, 8, 8), 10, seed=3)
    g = torch.Generator().manual_seed(4)
    x = torch.rand(16, 1, 8, 8, generator=g)
    y = model.predict(model(x)).detach()
    threat = ThreatModel(norm=norm, eps=0.3 if norm == "linf" else 1.5)
    attack = advframe.get_attack(name, **FAST[name])
    torch.manual_seed(0)  # random starts and squares come from torch's global RNG
    x_adv = attack(model, x, y, threat)
    assert threat.audit(x_adv, x).ok
    assert (model.predict(model(x_adv)) != y).float().mean() > 0.5


# -- plugin ------------------------------------------------------------------------
def test_registered_names():
    for name in ("apgd_ce", "apgd_dlr", "apgd_t", "fab_t", "square"):
        assert advframe.get_attack(name).name == name
    assert advframe.get_attack("square").black_box


def test_suites_are_registered_in_order_with_valid_parameters():
    reg = advframe.plugins.registry()
    full = reg.get("suites", "autoattack").factory
    assert [name for name, _ in full.attacks] == ["apgd_ce", "apgd_t", "fab_t", "square"]
    assert reg.get("suites", "autoattack_fast").factory.attacks == (("apgd_ce", {}), ("apgd_t", {}))
    for suite in (full, reg.get("suites", "autoattack_fast").factory):
        for name, params in suite.attacks:
            assert advframe.get_attack(name, **params).name == name


def test_missing_gradient_plugin_is_one_line_and_registers_nothing(monkeypatch):
    import advframe_autoattack.plugin as plugin

    monkeypatch.setitem(sys.modules, "advframe_gradient.losses", None)
    monkeypatch.delenv("ADVFRAME_STRICT_PLUGINS", raising=False)
    host = PluginHost()
    info = host.add(plugin, "autoattack")
    host.check_requirements()
    assert info.status == "error" and "apgd_ce" not in host.registry.names("attacks")
    assert any("needs plugin 'gradient'" in e and "\n" not in e for e in info.errors)


# -- class scores through model.scores ---------------------------------------------
class Negated(Classifier):
    """Outputs that are not scores: ``-logits``, with ``scores`` undoing the sign (as a
    codeword model's outputs need its ``scores`` to become class scores)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.inner(x)

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        return -outputs

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(-outputs, y, reduction="none")


@pytest.mark.parametrize("name,params", [
    ("apgd_ce", {"steps": 10}), ("apgd_dlr", {"steps": 10}), ("apgd_t", {"steps": 10, "n_target_classes": 3}),
    ("fab_t", {"steps": 10, "n_target_classes": 3}), ("square", {"queries": 100}),
    ("pgd", {"loss": "dlr", "steps": 10}), ("pgd", {"loss": "margin", "steps": 10})])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_attacks_read_classes_through_model_scores(name, params, norm):
    # the same network seen through outputs that are not scores: every attack that reads
    # class scores must reach the very same points, so it works on codeword models too
    lin, _ = affine(6, seed=31, d=16)
    net = nn.Sequential(nn.Flatten(), lin)  # on 1x4x4 images: Square needs image-shaped inputs
    plain, negated = advframe.as_model(net).eval(), Negated(net).eval()
    x = inputs(n=16, seed=32, d=16).view(16, 1, 4, 4)
    y = plain.predict(plain(x)).detach()
    threat = ThreatModel(norm=norm, eps=0.5 if norm == "linf" else 2.0, bounds=(-10.0, 10.0))
    torch.manual_seed(0)
    a = advframe.get_attack(name, **params)(plain, x, y, threat)
    torch.manual_seed(0)
    b = advframe.get_attack(name, **params)(negated, x, y, threat)
    torch.testing.assert_close(a, b)
    assert (plain.predict(plain(a)) != y).any()  # the check is not vacuous: something broke
