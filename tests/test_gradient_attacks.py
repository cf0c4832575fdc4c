"""The gradient attacks of advframe_gradient against closed forms on linear models,
exact gradient-evaluation budgets, the Kurakin schedule and the papers' presets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from advframe_gradient._ops import kurakin_steps
from advframe_gradient.iterative import IterBasic, IterLL
from advframe_gradient.momentum import MIM
from advframe_gradient.noise import RandNormal, RandSign
from advframe_gradient.one_step import FGSM, FastGradL2, FastGradLinf, StepLL, StepRnd
from advframe_gradient.pgd import PGD
from torch import nn

import advframe
import advframe.plugins
from advframe.errors import ParameterError
from advframe.model import Classifier
from advframe.testing import CountingModel
from advframe.threat import ThreatModel


def linear_model(d: int = 12, k: int = 4, seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    return advframe.as_model(nn.Linear(d, k)).eval()


def ce_gradient(layer: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Closed form: ∇x CE(Wx + b, y) = W^T (softmax(Wx + b) - onehot(y))."""
    p = torch.softmax(x @ layer.weight.T + layer.bias, dim=1)
    return (p - F.one_hot(y, layer.out_features).float()) @ layer.weight


def mlp(seed: int = 0, d: int = 10, k: int = 5) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, k)).eval()


def test_fgsm_matches_closed_form_on_linear_softmax():
    model = linear_model()
    torch.manual_seed(1)
    x, y = torch.rand(16, 12), torch.randint(0, 4, (16,))
    threat = ThreatModel("linf", 0.1, (0.0, 1.0))
    expected = (x + 0.1 * ce_gradient(model.module, x, y).sign()).clamp(0, 1)
    torch.testing.assert_close(FGSM()(model, x, y, threat), expected)


def test_targeted_fgsm_descends_target_loss_in_closed_form():
    model = linear_model()
    torch.manual_seed(2)
    x, t = torch.rand(8, 12), torch.randint(0, 4, (8,))
    threat = ThreatModel("linf", 0.05, (0.0, 1.0), targeted=True)
    expected = (x - 0.05 * ce_gradient(model.module, x, t).sign()).clamp(0, 1)
    torch.testing.assert_close(FGSM()(model, x, t.new_zeros(8), threat, target=t), expected)


def test_fast_grad_l2_moves_along_weight_difference_of_binary_linear_model():
    model = linear_model(d=6, k=2, seed=3)
    w = model.module.weight.detach()
    x = 0.4 + 0.2 * torch.rand(10, 6)  # far from the bounds: the step is never clipped
    y = torch.randint(0, 2, (10,))
    eps = 0.05
    step = FastGradL2()(model, x, y, ThreatModel("l2", eps, (0.0, 1.0))) - x
    u = (w[1] - w[0]) / (w[1] - w[0]).norm()
    sign = torch.where(y == 0, 1.0, -1.0).unsqueeze(1)  # loss of class 0 rises along w1 - w0
    torch.testing.assert_close(step, eps * sign * u, atol=1e-6, rtol=1e-5)


def test_fast_grad_linf_scales_largest_coordinate_to_eps():
    model = linear_model(seed=4)
    x, y = 0.5 + 0.1 * torch.rand(6, 12), torch.randint(0, 4, (6,))
    step = FastGradLinf()(model, x, y, ThreatModel("linf", 0.03, (0.0, 1.0))) - x
    g = ce_gradient(model.module, x, y)
    torch.testing.assert_close(step, 0.03 * g / g.abs().amax(dim=1, keepdim=True), atol=1e-6, rtol=1e-5)


def test_step_ll_raises_least_likely_score():
    model = linear_model(seed=5)
    torch.manual_seed(5)
    x, y = 0.3 + 0.4 * torch.rand(32, 12), torch.randint(0, 4, (32,))
    with torch.no_grad():
        before = model(x)
        ll = before.argmin(dim=1)
        after = model(StepLL()(model, x, y, ThreatModel("linf", 0.1, (0.0, 1.0))))
    p_before = torch.softmax(before, 1).gather(1, ll[:, None])
    p_after = torch.softmax(after, 1).gather(1, ll[:, None])
    assert bool((p_after > p_before).all())


def test_step_rnd_is_seeded_and_never_reads_the_true_label():
    model = linear_model(seed=6)
    x, y = torch.rand(20, 12), torch.randint(0, 4, (20,))
    threat = ThreatModel("linf", 0.1, (0.0, 1.0))
    a = StepRnd(seed=3)(model, x, y, threat)
    torch.testing.assert_close(a, StepRnd(seed=3)(model, x, (y + 1) % 4, threat))
    assert not torch.equal(a, StepRnd(seed=4)(model, x, y, threat))
    # the random target is never the predicted class: the predicted class's probability drops
    with torch.no_grad():
        pred = model(x).argmax(dim=1)
        drop = torch.softmax(model(a), 1).gather(1, pred[:, None]) < torch.softmax(model(x), 1).gather(1, pred[:, None])
    assert bool(drop.float().mean() > 0.5)
    assert not StepRnd.uses_true_label


def test_noise_controls_have_the_papers_distributions():
    x = torch.full((4, 2000), 0.5)
    threat = ThreatModel("linf", 0.2, (0.0, 1.0))
    d = RandSign(seed=0)(None, x, None, threat) - x
    torch.testing.assert_close(d.abs(), torch.full_like(d, 0.2))
    n = RandNormal(seed=0)(None, x, None, threat) - x
    assert float(n.abs().max()) <= 0.2 + 1e-6
    # N(0, 0.1) truncated at 2 sigma has standard deviation 0.1 * 0.8796
    assert abs(float(n.std()) - 0.08796) < 0.004
    torch.testing.assert_close(n, RandNormal(seed=0)(None, x, None, threat) - x)


@pytest.mark.parametrize("eps,steps", [(0.05, 15), (0.1, 29), (0.2, 55), (0.3, 80)])
def test_kurakin_schedule_counts(eps, steps):
    assert kurakin_steps(eps, (0.0, 1.0)) == steps
    # the same eps in pixel units on [0, 255] gives the same count
    assert kurakin_steps(eps * 255, (0.0, 255.0)) == steps
    alpha, n = IterBasic().schedule(ThreatModel("linf", eps, (0.0, 1.0)))
    assert n == steps and alpha == pytest.approx(1 / 255)


def test_kurakin_schedule_small_eps():
    assert kurakin_steps(0.0, (0.0, 1.0)) == 0
    assert kurakin_steps(1 / 255, (0.0, 1.0)) == 1
    assert kurakin_steps(4 / 255, (0.0, 1.0)) == 5
    assert IterBasic().schedule(ThreatModel("linf", 0.1, (-1.0, 1.0)))[0] == pytest.approx(2 / 255)


@pytest.mark.parametrize("attack,norm,expected", [
    (IterBasic(early_exit=False), "linf", 29), (IterBasic(steps=7, early_exit=False), "linf", 7),
    (IterLL(early_exit=False), "linf", 29), (PGD(steps=6, early_exit=False), "linf", 6),
    (PGD(steps=5, restarts=3, early_exit=False), "l2", 15), (MIM(steps=9, early_exit=False), "linf", 9),
    (MIM(steps=4, early_exit=False), "l2", 4),
])
def test_iterative_attacks_spend_exactly_their_steps(attack, norm, expected):
    """The fixed-step run (``early_exit=False``): every step on every example."""
    model = CountingModel(mlp())
    x, y = torch.rand(8, 10), torch.randint(0, 5, (8,))
    attack(model, x, y, ThreatModel(norm, 0.1, (0.0, 1.0)))
    assert model.backwards == expected
    assert attack.gradient_evaluations == expected
    restarts = getattr(attack, "restarts", 1)
    # one extra forward (no backward) per restart only when restarts must be compared
    assert model.forwards == expected + (restarts if restarts > 1 else 0)


def test_targeted_iterative_attacks_spend_exactly_their_steps():
    model = CountingModel(mlp())
    x, t = torch.rand(8, 10), torch.randint(0, 5, (8,))
    threat = ThreatModel("linf", 0.1, (0.0, 1.0), targeted=True)
    for attack, n in ((IterBasic(steps=3), 3), (PGD(steps=4), 4), (MIM(steps=5), 5)):
        model.reset()
        attack(model, x, t, threat, target=t)
        assert model.backwards == n


@pytest.mark.parametrize("name", ["fgsm", "fgsm_pred", "step_ll", "step_rnd", "fast_entropy",
                                  "fast_grad_l2", "fast_grad_linf"])
def test_one_step_grid_costs_one_gradient(name):
    params = {"seed": 1} if name == "step_rnd" else {}
    attack = advframe.get_attack(name, **params)
    model = CountingModel(mlp())
    x, y = torch.rand(8, 10), torch.randint(0, 5, (8,))
    threats = [ThreatModel(attack.norms[0], e, (0.0, 1.0)) for e in (0.0, 0.05, 0.1, 0.3)]
    crafted = attack.grid(model, x, y, threats)
    assert model.backwards == 1 and model.forwards == 1 and attack.gradient_evaluations == 1
    # the one gradient is booked as an equal share to each eps, and said to be shared
    assert [c.gradient_evaluations for c in crafted] == [0.25] * 4 and all(c.shared for c in crafted)
    advs = [c.x_adv for c in crafted]
    assert len(advs) == 4
    torch.testing.assert_close(advs[0], x)
    for threat, adv in zip(threats, advs):  # each grid point equals the single-eps attack
        torch.testing.assert_close(adv, advframe.get_attack(name, **params)(model, x, y, threat))


def test_one_step_grid_of_zero_eps_spends_nothing():
    model = CountingModel(mlp())
    attack = FGSM()
    x = torch.rand(3, 10)
    crafted = attack.grid(model, x, torch.zeros(3, dtype=torch.long), [ThreatModel("linf", 0.0)] * 2)
    assert model.forwards == 0 and attack.gradient_evaluations == 0
    assert [c.gradient_evaluations for c in crafted] == [0.0, 0.0]
    torch.testing.assert_close(crafted[1].x_adv, x)


def test_iter_ll_targets_least_likely_class_of_clean_input():
    model = linear_model(seed=7)
    x, y = 0.3 + 0.4 * torch.rand(16, 12), torch.randint(0, 4, (16,))
    with torch.no_grad():
        ll = model(x).argmin(dim=1)
    x_adv = IterLL(steps=5, early_exit=False)(model, x, y, ThreatModel("linf", 0.1, (0.0, 1.0)))
    hand = x.clone()
    for _ in range(5):
        hand = (hand - (1 / 255) * ce_gradient(model.module, hand, ll).sign()).clamp(x - 0.1, x + 0.1).clamp(0, 1)
    torch.testing.assert_close(x_adv, hand)


def test_iter_basic_matches_kurakin_recursion():
    model = linear_model(seed=8)
    x, y = torch.rand(16, 12), torch.randint(0, 4, (16,))
    eps = 0.05
    hand = x.clone()
    for _ in range(15):
        hand = (hand + (1 / 255) * ce_gradient(model.module, hand, y).sign()).clamp(x - eps, x + eps).clamp(0, 1)
    torch.testing.assert_close(IterBasic(early_exit=False)(model, x, y, ThreatModel("linf", eps, (0.0, 1.0))), hand)


def test_pgd_restarts_keep_worst_case_per_example():
    model = advframe.as_model(mlp(seed=9)).eval()
    x, y = torch.rand(32, 10), torch.randint(0, 5, (32,))
    threat = ThreatModel("linf", 0.2, (0.0, 1.0))

    def loss(xa):
        with torch.no_grad():
            return model.loss(model(xa), y)

    best = loss(PGD(steps=3, restarts=4, seed=0)(model, x, y, threat))
    first = loss(PGD(steps=3, seed=0)(model, x, y, threat))  # the first restart of the seed-0 run
    assert bool((best >= first - 1e-6).all())
    assert bool((best > first + 1e-6).any())  # later restarts win on some examples


def test_pgd_madry_step_size_default():
    pgd = PGD()
    assert pgd.steps == 40 and pgd.step_size is None and pgd.restarts == 1 and pgd.random_start
    assert advframe.get_attack("pgd", preset="madry").step_size == 0.01


def test_presets_saito():
    bim = advframe.get_attack("bim", preset="saito")
    assert (bim.alpha, bim.steps) == (0.05, 10)
    mim = advframe.get_attack("mim", preset="saito")
    assert (mim.step_size, mim.steps, mim.decay) == (0.06, 10, 1.0)
    pgd = advframe.get_attack("pgd", preset="saito")
    assert (pgd.step_size, pgd.steps) == (0.01, 40)
    assert advframe.get_attack("pgd", preset="saito", steps="7").steps == 7


def test_registry_names_and_aliases():
    advframe.plugins.reset()
    assert isinstance(advframe.get_attack("bim"), IterBasic)
    assert isinstance(advframe.get_attack("iter_basic"), IterBasic)
    names = ["fgsm", "fgsm_pred", "step_ll", "step_rnd", "fast_entropy", "fast_grad_l2", "fast_grad_linf",
             "rand_sign", "rand_normal", "iter_basic", "iter_ll", "pgd", "mim"]
    for name in names:
        attack = advframe.get_attack(name)
        doc = " ".join((type(attack).__doc__ or "").lower().split())
        assert attack.name == name
        assert "et al" in doc and "norm" in doc and "target" in doc and ("args:" in doc or "no hyper" in doc)


def test_bad_parameters_are_refused():
    with pytest.raises(ParameterError):
        PGD(restarts=0)
    with pytest.raises(ParameterError):
        IterBasic(alpha=-1.0)
    with pytest.raises(ParameterError):
        MIM(steps=-2)
    with pytest.raises(ParameterError):
        advframe.get_attack("fgsm")(linear_model(), torch.rand(2, 12), torch.zeros(2, dtype=torch.long),
                                    ThreatModel("l2", 0.1))
    with pytest.raises(ParameterError):
        advframe.get_attack("iter_ll")(linear_model(), torch.rand(2, 12), torch.zeros(2, dtype=torch.long),
                                       ThreatModel("linf", 0.1, targeted=True), target=torch.zeros(2, dtype=torch.long))


class MSEModel(Classifier):
    """A model trained on MSE to one-hot codes: attacks must use its own loss."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(12, 4)

    def forward(self, x):
        return torch.tanh(self.net(x))

    def loss(self, outputs, y):
        return ((outputs - F.one_hot(y, 4).float()) ** 2).sum(dim=1)


def test_attacks_use_the_models_own_loss():
    torch.manual_seed(10)
    model = MSEModel().eval()
    x, y = torch.rand(8, 12), torch.randint(0, 4, (8,))
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model.loss(model(xg), y).sum(), xg)
    torch.testing.assert_close(FGSM()(model, x, y, ThreatModel("linf", 0.1)), (x + 0.1 * g.sign()).clamp(0, 1))


def test_mim_without_momentum_and_pgd_without_start_reduce_to_bim():
    model = advframe.as_model(mlp(seed=11)).eval()
    x, y = torch.rand(16, 10), torch.randint(0, 5, (16,))
    threat = ThreatModel("linf", 0.1, (0.0, 1.0))
    bim = IterBasic(alpha=0.02, steps=6)(model, x, y, threat)
    torch.testing.assert_close(MIM(decay=0.0, step_size=0.02, steps=6)(model, x, y, threat), bim)
    torch.testing.assert_close(PGD(random_start=False, step_size=0.02, steps=6)(model, x, y, threat), bim)


def test_mim_accumulates_l1_normalised_gradients():
    model = linear_model(seed=12)
    x, y = 0.3 + 0.4 * torch.rand(8, 12), torch.randint(0, 4, (8,))
    threat = ThreatModel("linf", 0.2, (0.0, 1.0))
    hand, g_acc = x.clone(), torch.zeros_like(x)
    for _ in range(4):
        g = ce_gradient(model.module, hand, y)
        g_acc = g_acc + g / g.abs().sum(dim=1, keepdim=True)
        hand = (hand + 0.03 * g_acc.sign()).clamp(x - 0.2, x + 0.2).clamp(0, 1)
    torch.testing.assert_close(MIM(steps=4, step_size=0.03, early_exit=False)(model, x, y, threat), hand)


# -- the loss parameter (margin, DLR) of pgd, iter_basic and mim ----------------------
@pytest.mark.parametrize("targeted", [False, True])
def test_margin_loss_steps_follow_the_closed_form_on_a_linear_model(targeted):
    # scores z = Wx + b: the margin's gradient is w_j - w_y (untargeted, j the best other
    # class) or w_t - w_j' (targeted, j' the best class other than t): one sign step along it
    model = linear_model(seed=21)
    w, b = model.module.weight.detach(), model.module.bias.detach()
    x, y = 0.3 + 0.4 * torch.rand(8, 12), torch.randint(0, 4, (8,))
    t = (y + 1) % 4 if targeted else None
    z = x @ w.T + b
    label = t if targeted else y
    others = z.scatter(1, label.view(-1, 1), float("-inf")).argmax(dim=1)
    g = w[others] - w[label] if not targeted else w[label] - w[others]
    threat = ThreatModel("linf", 0.2, (0.0, 1.0), targeted=targeted)
    got = PGD(loss="margin", random_start=False, step_size=0.05, steps=1, early_exit=False)(model, x, y, threat, t)
    torch.testing.assert_close(got, (x + 0.05 * g.sign()).clamp(0, 1))


@pytest.mark.parametrize("cls", [PGD, IterBasic, MIM])
@pytest.mark.parametrize("loss", ["margin", "dlr"])
def test_loss_parameter_ascends_the_named_loss(cls, loss):
    # an independent loop: sign steps up the loss's autograd gradient, clipped to ball and box
    from advframe_gradient.losses import dlr_loss, margin_loss
    model = advframe.as_model(mlp(seed=22)).eval()
    x, y = torch.rand(16, 10), torch.randint(0, 5, (16,))
    threat = ThreatModel("linf", 0.1, (0.0, 1.0))
    fn = {"margin": margin_loss, "dlr": dlr_loss}[loss]
    hand = x.clone()
    for _ in range(5):
        h = hand.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(fn(model(h), y).sum(), h)
        hand = (hand + 0.02 * g.sign()).clamp(x - 0.1, x + 0.1).clamp(0, 1)
    kw = {"random_start": False, "step_size": 0.02} if cls is PGD else {"decay": 0.0, "step_size": 0.02} \
        if cls is MIM else {"alpha": 0.02}
    torch.testing.assert_close(cls(loss=loss, steps=5, early_exit=False, **kw)(model, x, y, threat), hand)


def test_dlr_breaks_a_model_whose_saturated_softmax_hides_the_gradient():
    # logits scaled by 1e4: cross-entropy is 0 in float32 for every confident example, so
    # its gradient vanishes and PGD on the model's loss does not move; DLR is scale-invariant
    torch.manual_seed(23)
    layer = nn.Linear(12, 4)
    scaled = advframe.as_model(nn.Sequential(layer, ScaleBy(1e4))).eval()
    plain = advframe.as_model(layer).eval()
    x = torch.rand(64, 12)
    y = scaled.predict(scaled(x)).detach()
    threat = ThreatModel("linf", 0.5, (0.0, 1.0))
    kw = {"random_start": False, "steps": 20, "step_size": 0.05}
    ce = PGD(**kw)(scaled, x, y, threat)
    assert torch.equal(ce, x)  # no gradient, no step
    robust_dlr = (scaled.predict(scaled(PGD(loss="dlr", **kw)(scaled, x, y, threat))) == y).float().mean()
    robust_plain = (plain.predict(plain(PGD(**kw)(plain, x, y, threat))) == y).float().mean()
    assert robust_dlr <= robust_plain and robust_dlr < 0.5


class ScaleBy(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.factor


def test_loss_parameter_errors_name_the_value_and_the_class_counts():
    with pytest.raises(ParameterError, match=r"attack 'pgd': loss='dlrr' .*did you mean 'dlr'\?"):
        PGD(loss="dlrr")
    two = linear_model(k=2, seed=24)
    x, y = torch.rand(4, 12), torch.randint(0, 2, (4,))
    with pytest.raises(ParameterError, match=r"attack 'pgd': the DLR loss needs at least 3 classes, the model has 2"):
        PGD(loss="dlr")(two, x, y, ThreatModel("linf", 0.1))
    three = linear_model(k=3, seed=24)
    y3, t3 = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    with pytest.raises(ParameterError, match=r"the targeted DLR loss needs at least 4 classes, the model has 3"):
        PGD(loss="dlr")(three, x, y3, ThreatModel("linf", 0.1, targeted=True), t3)
    assert PGD(loss="margin")(two, x, y, ThreatModel("linf", 0.1)).shape == x.shape


def test_loss_parameter_keeps_the_gradient_budget():
    model = CountingModel(mlp(seed=25))
    x, y = torch.rand(8, 10), torch.randint(0, 5, (8,))
    attack = PGD(loss="dlr", steps=7, restarts=2, early_exit=False)
    attack(model, x, y, ThreatModel("l2", 0.5, (0.0, 1.0)))
    assert attack.gradient_evaluations == model.backwards == 14
