"""The evaluation engine: metrics against hand counts, the audit, resume, plain modules."""

import json

import pytest
import torch
from torch import nn

import advframe
from advframe.attack import Attack, shared_over
from advframe.errors import DataError, ThreatViolation


class SignStep(Attack):
    """x + eps·sign(grad): a one-step attack that shares its gradient over the grid."""

    name = "test_sign"
    uses_true_label = True
    leaks_labels = True

    def perturb(self, model, x, y, threat, target):
        return self.craft_grid(model, x, y, [threat], target, None)[0].x_adv

    def craft_grid(self, model, x, y, threats, target, seeds):
        self.reset_counter()
        g, _ = self.objective_gradient(model, x, y, target)
        return shared_over([t.project(x + t.eps * g.sign(), x) for t in threats], self.gradient_evaluations,
                           self.forward_queries, 0.0)


class Escape(Attack):
    """Deliberately steps outside the ball."""

    name = "test_escape"

    def perturb(self, model, x, y, threat, target):
        return (x + 2 * threat.eps + 1e-3).clamp(*threat.bounds) if threat.eps else x


def linear_problem(n=120, d=12, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    net = nn.Linear(d, k)
    with torch.no_grad():
        net.weight.copy_(torch.randn(k, d, generator=g))
        net.bias.zero_()
    x = torch.rand(n, d, generator=g) * 0.8 + 0.1
    y = net(x).argmax(1)
    y[:10] = (y[:10] + 1) % k  # some clean mistakes
    return net, x, y


def test_metrics_match_a_hand_count():
    net, x, y = linear_problem()
    r = advframe.evaluate(net, (x, y), attacks=[SignStep()], eps=[0.0, 0.05], batch_size=50, label_leaks=False)
    clean_pred = net(x).argmax(1)
    assert r.clean_top1 == pytest.approx(float((clean_pred == y).float().mean()))
    assert r.examples == 120
    g = torch.autograd.functional.jacobian(lambda z: nn.functional.cross_entropy(net(z), y, reduction="sum"), x)
    x_adv = (x + 0.05 * g.sign()).clamp(0, 1)
    adv_pred = net(x_adv).argmax(1)
    run = r.run("test_sign", 0.05)
    assert run["top1"] == pytest.approx(float((adv_pred == y).float().mean()))
    ok = clean_pred == y
    assert run["success_rate"] == pytest.approx(float((ok & (adv_pred != y)).sum() / ok.sum()))
    assert run["accuracy_ratio"] == pytest.approx(run["top1"] / r.clean_top1)
    assert run["max_perturbation"] == pytest.approx(0.05, abs=1e-6)
    assert r.run("test_sign", 0.0)["top1"] == r.clean_top1
    # one gradient per example for the whole grid, booked as an equal share to each eps
    assert r.run("test_sign", 0.0)["gradient_evaluations"] == 0.5
    assert run["gradient_evaluations"] == 0.5
    assert run["gradient_shared_across_eps"] and r.run("test_sign", 0.0)["gradient_shared_across_eps"]


def test_violating_attack_is_refused_not_counted():
    net, x, y = linear_problem()
    r = advframe.evaluate(net, (x, y), attacks=[Escape(), SignStep()], eps=[0.1], batch_size=40)
    bad = r.run("test_escape", 0.1)
    assert bad["top1"] is None and bad["examples"] == 0
    assert bad["violations"] > 0 and bad["rejected_batches"] == 3
    assert {v.batch_start for v in r.violations} == {0, 40, 80}
    assert all(v.max_excess > 0.09 for v in r.violations)
    assert r.run("test_sign", 0.1)["violations"] == 0
    with pytest.raises(ThreatViolation, match="test_escape"):
        advframe.evaluate(net, (x, y), attacks=[Escape()], eps=[0.1], strict=True)


def test_label_leaks_count_true_label_wins_over_the_predicted_twin():
    net, x, y = linear_problem()
    r = advframe.evaluate(net, (x, y), attacks=[SignStep()], eps=[0.05], batch_size=120)
    gx = lambda labels: torch.autograd.functional.jacobian(  # noqa: E731
        lambda z: nn.functional.cross_entropy(net(z), labels, reduction="sum"), x)
    pred = net(x).argmax(1)
    true_ok = net((x + 0.05 * gx(y).sign()).clamp(0, 1)).argmax(1) == y
    twin_ok = net((x + 0.05 * gx(pred).sign()).clamp(0, 1)).argmax(1) == y
    assert r.run("test_sign", 0.05)["label_leaks"] == int((true_ok & ~twin_ok).sum())


def test_targeted_random_targets_and_success():
    net, x, y = linear_problem()

    class Targeted(SignStep):
        name = "test_targeted"
        targetable = True

    r = advframe.evaluate(net, (x, y), attacks=[Targeted()], eps=[0.0, 1.0], targeted=True, batch_size=60)
    from advframe.attack import random_target

    targets = torch.cat([random_target(y[s:s + 60], 4, torch.Generator().manual_seed(0 * 7919 + s))
                         for s in (0, 60)])
    assert bool((targets != y).all())
    # at eps 0 the hits are exactly the examples already classified as their target
    assert r.run("test_targeted", 0.0)["success_rate"] == pytest.approx(float((net(x).argmax(1) == targets).float().mean()))
    assert r.run("test_targeted", 1.0)["success_rate"] > 0.5


def test_results_do_not_depend_on_batch_size():
    net, x, y = linear_problem()
    a = advframe.evaluate(net, (x, y), attacks=[SignStep()], eps=[0.03, 0.1], batch_size=7)
    b = advframe.evaluate(net, (x, y), attacks=[SignStep()], eps=[0.03, 0.1], batch_size=120)
    for ra, rb in zip(a.runs, b.runs):
        assert (ra["top1"], ra["top5"], ra["label_leaks"]) == (rb["top1"], rb["top5"], rb["label_leaks"])


def test_resume_from_partial_state(tmp_path):
    net, x, y = linear_problem()
    state = tmp_path / "r.json.partial"
    full = advframe.evaluate(net, (x, y), attacks=[SignStep()], eps=[0.05], batch_size=30)

    class Interrupt(Exception):
        pass

    calls = {"n": 0}

    def stop_after_two(event):
        calls["n"] += 1
        if calls["n"] == 3:  # the event before the first batch, then one per batch: stop after two batches
            raise Interrupt

    with pytest.raises(Interrupt):
        advframe.evaluate(net, (x, y), attacks=[SignStep()], eps=[0.05], batch_size=30, state_path=state,
                          progress=stop_after_two)
    saved = json.loads(state.read_text())
    assert saved["done"] == [0, 30]
    seen = []
    resumed = advframe.evaluate(net, (x, y), attacks=[SignStep()], eps=[0.05], batch_size=30, state_path=state,
                                progress=lambda e: seen.append(e.completed))
    assert seen == [60, 90, 120]   # counted in examples: 60 already done, only the remaining batches ran
    assert resumed.runs[0]["top1"] == full.runs[0]["top1"] and resumed.examples == 120
    assert not state.exists()


def test_bad_data_is_refused_with_the_index():
    net, x, y = linear_problem()
    x = x.clone()
    x[7, 3] = float("nan")
    with pytest.raises(DataError, match="example 7"):
        advframe.evaluate(net, (x, y), attacks=[SignStep()], eps=[0.1])
    with pytest.raises(DataError, match="outside the bounds"):
        advframe.evaluate(net, (x.nan_to_num() * 255, y), attacks=[SignStep()], eps=[0.1])


def test_plain_module_with_registered_attack_on_the_embedded_data():
    data = advframe.load_dataset("mnist5k", split="test").take(64)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    r = advframe.evaluate(model, data, attacks=["iter_ll"], eps=[8 / 255])
    run = r.runs[0]
    assert run["attack"] == "iter_ll" and run["violations"] == 0
    assert run["max_perturbation"] <= 8 / 255 + 1e-6
    assert run["top1"] <= r.clean_top1


def test_top5_is_null_and_not_shown_for_five_classes_or_fewer():
    from advframe.cli.render import eval_table
    from advframe.report import eval_document_problem, markdown

    net, x, y = linear_problem(k=4)
    doc = advframe.evaluate(net, (x, y), attacks=[SignStep()], eps=[0.05], batch_size=50).to_dict()
    assert "top5" in doc["clean"] and doc["clean"]["top5"] is None   # the key stays, with null
    assert all("top5" in r and r["top5"] is None for r in doc["runs"])
    assert eval_document_problem(doc) is None
    table = eval_table(doc)
    assert "top-5" not in [c.header for c in table.columns] and "top-5" not in str(table.title)
    assert "top-5" not in markdown([doc], [])

    net, x, y = linear_problem(k=6)
    doc = advframe.evaluate(net, (x, y), attacks=[SignStep()], eps=[0.05], batch_size=50).to_dict()
    assert doc["clean"]["top5"] is not None and doc["runs"][0]["top5"] is not None
    assert "top-5" in [c.header for c in eval_table(doc).columns] and "top-5" in markdown([doc], [])


@pytest.mark.parametrize("bad", [42, "mnist_cnn_standard", object()])
def test_a_model_that_is_not_a_module_is_named_with_the_way_to_load_one(bad):
    with pytest.raises(TypeError, match=r"got (int 42|str 'mnist_cnn_standard'|object <object).*advframe\.load_model"):
        advframe.evaluate(bad, "mnist5k", attacks=["fgsm"], eps=[0.1], limit=10)
