"""Early exit in the iterative loop (advframe_gradient.loop): the kept point against a closed
form on a linear model, never broken -> unbroken, pass counts by hand on a counting model,
restarts on the unbroken examples only, and the fixed-step run bit for bit."""

from __future__ import annotations

import pytest
import torch
from advframe_gradient.iterative import IterBasic, IterLL
from advframe_gradient.momentum import MIM
from advframe_gradient.pgd import PGD
from torch import nn

import advframe
from advframe.ops import per_example, steepest
from advframe.testing import CountingModel
from advframe.threat import ThreatModel


def two_class_linear(d: int = 16, seed: int = 0) -> tuple[nn.Linear, object]:
    torch.manual_seed(seed)
    layer = nn.Linear(d, 2)
    return layer, advframe.as_model(layer).eval()


def mlp(seed: int = 0, d: int = 10, k: int = 5) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 32), nn.ReLU(), nn.Linear(32, k)).eval()


def first_broken_step(layer: nn.Linear, x: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """Closed form on a 2-class linear model: CE's input gradient is ``(p_y - 1)(w_y - w_o)``, so
    sign steps move along ``-sign(w_y - w_o)`` and the margin ``(w_y - w_o)·x + b_y - b_o`` falls
    by ``alpha·||w_y - w_o||_1`` per step; the first iterate with a negative margin is broken."""
    w, b = layer.weight.detach(), layer.bias.detach()
    dw = w[y] - w[1 - y]
    margin = (dw * x).sum(1) + b[y] - b[1 - y]
    return torch.ceil(margin / (alpha * dw.abs().sum(1))).clamp_min(0).long()


def test_kept_point_is_the_closed_form_on_a_linear_model():
    layer, model = two_class_linear()
    n, steps, alpha = 40, 12, 0.03
    x = torch.rand(n, 16)  # bounds never bind: (−10, 10) and eps = steps·alpha
    with torch.no_grad():
        y = model(x).argmax(1)  # every example starts classified as y
    threat = ThreatModel("linf", steps * alpha + 1e-3, (-10.0, 10.0))
    kept = IterBasic(alpha=alpha, steps=steps)(model, x, y, threat)
    t_star = first_broken_step(layer, x, y, alpha)
    w = layer.weight.detach()
    direction = -torch.sign(w[y] - w[1 - y])
    t = t_star.clamp(max=steps)  # never broken: the objective rises every step, the last iterate is best
    torch.testing.assert_close(kept, x + per_example(t.float() * alpha, x) * direction, atol=1e-5, rtol=0)
    assert 0 < int((t_star < steps).sum()) < n  # some stop early, some run every step
    assert len(set(t_star.tolist())) > 3


def test_pass_counts_equal_a_hand_count_on_a_counting_model():
    layer, model = two_class_linear()
    n, steps, alpha = 40, 12, 0.03
    x = torch.rand(n, 16)
    with torch.no_grad():
        y = model(x).argmax(1)
    threat = ThreatModel("linf", steps * alpha + 1e-3, (-10.0, 10.0))
    t_star = first_broken_step(layer, x, y, alpha)
    counting = CountingModel(model)
    attack = IterBasic(alpha=alpha, steps=steps)
    attack(counting, x, y, threat)
    # an example broken first at iterate t* takes gradient passes at x_0 .. x_t* (at most `steps`),
    # and one forward query at x_steps when it is still standing there
    grads = (t_star + 1).clamp(max=steps)
    last = (t_star >= steps).long()
    assert counting.backwards == attack.gradient_evaluations == int(grads.max())
    assert counting.forwards == attack.gradient_evaluations + attack.forward_queries
    assert counting.rows == int(grads.sum() + last.sum())
    per_grad, per_forward = attack.booked(n)
    assert per_grad == pytest.approx(float(grads.sum()) / n)
    assert per_forward == pytest.approx(float(last.sum()) / n)
    # the evaluator books the same mean per example, and the total in the document
    result = advframe.evaluate(model, (x, y), attacks=[IterBasic(alpha=alpha, steps=steps)], eps=[threat.eps],
                               bounds=(-10.0, 10.0), batch_size=n)
    assert result.runs[0].gradient_evaluations == pytest.approx(float(grads.sum()) / n)
    assert result.runs[0].gradient_evaluations_total == pytest.approx(float(grads.sum()))
    assert result.runs[0].forward_queries_total == pytest.approx(float(last.sum()))  # the last iterates


def _fixed_paths(model, x, y, steps, alpha, eps):
    """iter_basic's fixed-step iterates x_0 .. x_steps, one example at a time (no batch effects).

    Returns per example: broken at some iterate, broken at the last, the highest loss over
    the iterates and the last iterate's loss.
    """
    threat = ThreatModel("linf", eps, (0.0, 1.0))
    ever, last, best_loss, last_loss = [], [], [], []
    for i in range(x.shape[0]):
        xi, yi = x[i:i + 1], y[i:i + 1]
        xa, wrong, losses = xi.clone(), [], []
        for t in range(steps + 1):
            xa.requires_grad_(True)
            out = model(xa)
            loss = model.loss(out, yi).sum()
            wrong.append(bool(out.argmax(1) != yi))
            losses.append(float(loss.detach()))
            if t < steps:
                (g,) = torch.autograd.grad(loss, xa)
                xa = threat.project(xa.detach() + alpha * steepest(g, "linf"), xi)
        ever.append(any(wrong))
        last.append(wrong[-1])
        best_loss.append(max(losses))
        last_loss.append(losses[-1])
    return torch.tensor(ever), torch.tensor(last), torch.tensor(best_loss), torch.tensor(last_loss)


def _mlp_and_points(seed=1, n=60):
    model = advframe.as_model(mlp(seed=seed)).eval()
    torch.manual_seed(seed)
    x = torch.rand(n, 10)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def test_an_example_never_goes_from_broken_back_to_unbroken():
    model, x, y = _mlp_and_points()
    steps, alpha, eps = 10, 0.3, 1.0  # large steps: iterates cross the boundary and come back
    broken_ever, broken_last, _, _ = _fixed_paths(model, x, y, steps, alpha, eps)
    assert bool((broken_ever & ~broken_last).any())  # the fixed-step run loses some: the test can fail
    kept = IterBasic(alpha=alpha, steps=steps)(model, x, y, ThreatModel("linf", eps, (0.0, 1.0)))
    fixed = IterBasic(alpha=alpha, steps=steps, early_exit=False)(model, x, y, ThreatModel("linf", eps, (0.0, 1.0)))
    with torch.no_grad():
        kept_broken = model(kept).argmax(1) != y
        fixed_broken = model(fixed).argmax(1) != y
    assert torch.equal(kept_broken, broken_ever)
    assert torch.equal(fixed_broken, broken_last)
    assert bool((kept_broken | ~fixed_broken).all())  # broken under fixed steps => broken under early exit


def test_an_unbroken_example_keeps_its_highest_objective_iterate():
    model, x, y = _mlp_and_points()
    steps, alpha, eps = 10, 0.1, 0.1  # steps as wide as the ball: iterates jump between corners
    ever, _, best, last = _fixed_paths(model, x, y, steps, alpha, eps)
    never = ~ever
    assert bool((best[never] > last[never] + 1e-3).any())  # the last iterate is not always the best
    kept = IterBasic(alpha=alpha, steps=steps)(model, x, y, ThreatModel("linf", eps, (0.0, 1.0)))
    with torch.no_grad():
        kept_loss = model.loss(model(kept), y)
    torch.testing.assert_close(kept_loss[never], best[never], atol=1e-5, rtol=1e-5)


def test_label_free_iter_ll_stops_at_its_least_likely_class_without_reading_labels():
    model = advframe.as_model(mlp()).eval()
    torch.manual_seed(2)
    x = torch.rand(40, 10)
    threat = ThreatModel("linf", 0.3, (0.0, 1.0))
    y = torch.randint(0, 5, (40,))  # random labels: many examples start misclassified
    a = IterLL(alpha=0.02, steps=20)(model, x, y, threat)
    assert torch.equal(a, IterLL(alpha=0.02, steps=20)(model, x, (y + 1) % 5, threat))
    fixed = IterLL(alpha=0.02, steps=20, early_exit=False)(model, x, y, threat)
    with torch.no_grad():
        least = model(x).argmin(1)
        at_least_early, at_least_fixed = model(a).argmax(1) == least, model(fixed).argmax(1) == least
    assert bool(at_least_fixed.any()) and not bool(at_least_fixed.all())
    assert bool((at_least_early | ~at_least_fixed).all())  # reached under fixed steps => kept there
    # leaving the clean prediction is not the goal: a wrong clean prediction may not stop at y
    with torch.no_grad():
        right_early = model(a).argmax(1) == y
    assert not bool((right_early & at_least_early & (least != y)).any())


def test_restarts_run_only_on_the_examples_not_yet_broken():
    model, x, y = _mlp_and_points(seed=3, n=50)
    threat = ThreatModel("linf", 0.08, (0.0, 1.0))
    counting = CountingModel(model)
    one = PGD(steps=5, restarts=1, seed=0)
    kept_one = one(counting, x, y, threat)
    rows_one = counting.rows
    counting.reset()
    three = PGD(steps=5, restarts=3, seed=0)
    kept_three = three(counting, x, y, threat)
    with torch.no_grad():
        left_after_one = int((model(kept_one).argmax(1) == y).sum())
        left_after_three = int((model(kept_three).argmax(1) == y).sum())
    assert 0 < left_after_one < 50
    assert left_after_three <= left_after_one
    # the first restart is the single run; the others cost at most (steps + 1) rows per example left
    assert rows_one < counting.rows <= rows_one + 2 * 6 * left_after_one
    fixed = PGD(steps=5, restarts=3, seed=0, early_exit=False)
    counting.reset()
    fixed(counting, x, y, threat)
    assert counting.rows == 3 * 5 * 50 + 3 * 50  # every restart on every example, one forward each


def _fixed_by_hand(model, x, y, threat, steps, size, start, momentum=None):
    xa = start.clone()
    state = torch.zeros_like(x)
    for _ in range(steps):
        xg = xa.detach().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(model.loss(model(xg), y).sum(), xg)
        if momentum is not None:
            state.mul_(momentum).add_(g / g.abs().flatten(1).sum(1).clamp_min(1e-12).view(-1, 1))
            g = state
        xa = threat.project(xa + size * steepest(g, threat.norm), x)
    return xa


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fixed_steps_are_bit_identical_to_the_plain_loop(norm):
    model = advframe.as_model(mlp(seed=4)).eval()
    torch.manual_seed(4)
    x = torch.rand(20, 10)
    y = torch.randint(0, 5, (20,))
    threat = ThreatModel(norm, 0.3 if norm == "linf" else 1.0, (0.0, 1.0))
    got = PGD(steps=7, random_start=False, early_exit=False)(model, x, y, threat)
    assert torch.equal(got, _fixed_by_hand(model, x, y, threat, 7, 2.5 * threat.eps / 7, x))
    got = MIM(steps=6, early_exit=False)(model, x, y, threat)
    assert torch.equal(got, _fixed_by_hand(model, x, y, threat, 6, threat.eps / 6, x, momentum=1.0))
    if norm == "linf":
        got = IterBasic(alpha=0.02, steps=9, early_exit=False)(model, x, y, threat)
        assert torch.equal(got, _fixed_by_hand(model, x, y, threat, 9, 0.02, x))


def test_training_adversaries_and_transfer_run_fixed_steps():
    from advframe_advtrain._common import attack_spec

    from advframe.options import resolve_attacks

    assert attack_spec("pgd").attack.params["early_exit"] is False
    assert attack_spec("pgd", early_exit=True).attack.params["early_exit"] is True
    assert attack_spec("fgsm").attack.params.get("early_exit") is None  # not declared: untouched
    (spec,) = resolve_attacks(["iter_ll"], None, early_exit=False)
    assert spec.attack.params["early_exit"] is False
    (spec,) = resolve_attacks(["iter_ll"], None)
    assert spec.attack.params["early_exit"] is True


def test_early_exit_accuracy_is_at_most_the_fixed_step_accuracy_per_example():
    model, x, y = _mlp_and_points(seed=5, n=80)
    for eps in (0.05, 0.1, 0.2):
        threat = ThreatModel("linf", eps, (0.0, 1.0))
        for make in (lambda e: PGD(steps=10, seed=7, early_exit=e), lambda e: MIM(steps=10, early_exit=e)):
            fast, slow = make(True)(model, x, y, threat), make(False)(model, x, y, threat)
            assert threat.audit(fast, x).ok
            with torch.no_grad():
                survives_fast = model(fast).argmax(1) == y
                survives_slow = model(slow).argmax(1) == y
            assert bool((~survives_fast | survives_slow).all()), eps


def test_the_transfer_check_crafts_on_its_source_with_fixed_steps(monkeypatch):
    """whitebox_beats_transfer: an early exit on the source model would weaken the transferred points."""
    from advframe_checks.probe import Probe

    model = advframe.as_model(mlp(seed=6)).eval()
    source = advframe.as_model(mlp(seed=7)).eval()
    torch.manual_seed(6)
    x = torch.rand(40, 10)
    y = model(x).argmax(1).detach()
    probe = Probe(model, x, y, (0.0, 1.0), "linf", attacks={"pgd": PGD(steps=10)})
    built = []
    real_build = Probe.build
    monkeypatch.setattr(Probe, "build", lambda self, *a, **k: built.append(real_build(self, *a, **k)) or built[-1])
    probe.attack("pgd", 0.3, params={"steps": 10, "early_exit": True}, source=source)
    assert built[-1].params["early_exit"] is False
    probe.attack("pgd", 0.3, params={"steps": 10, "early_exit": True})
    assert built[-1].params["early_exit"] is True  # white-box on the model itself: the evaluation's own


def test_cw_searches_on_only_the_examples_without_a_success_inside_eps():
    from advframe_optim.cw import CarliniWagnerL2

    model, x, y = _mlp_and_points(seed=8, n=24)
    threat = ThreatModel("l2", 0.3, (0.0, 1.0))
    budget = {"binary_search_steps": 3, "max_iterations": 15, "learning_rate": 0.05, "initial_const": 0.1}
    fast, slow = CarliniWagnerL2(abort_early=False, **budget), CarliniWagnerL2(abort_early=False, early_exit=False, **budget)
    a, b = fast(model, x, y, threat), slow(model, x, y, threat)
    with torch.no_grad():
        broken_fast, broken_slow = model(a).argmax(1) != y, model(b).argmax(1) != y
    assert bool(broken_slow.any()) and not bool(broken_slow.all())
    assert torch.equal(broken_fast, broken_slow)  # Adam is per coordinate: the others' search is unchanged
    assert fast.booked(24)[0] < slow.booked(24)[0] == 3 * 15
    # abort_early sums the objective over the batch: dropping examples would change the rest's rounds
    c, d = CarliniWagnerL2(**budget), CarliniWagnerL2(early_exit=False, **budget)
    assert torch.equal(c(model, x, y, threat), d(model, x, y, threat))
