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


# the problem fixture's linear classifier on 120 inputs, the first 10 labels clean mistakes
LINEAR = {"n": 120, "wrong": slice(0, 10)}


def test_metrics_match_a_hand_count(problem):
    net, x, y = problem(**LINEAR)
    r = advframe.evaluate(net, (x, y), attacks=[SignStep()], eps=[0.0, 0.05], batch_size=50, label_leaks=False)
    clean_pred = net(x).argmax(1)
    assert r.clean_top1 == pytest.approx(float((clean_pred == y).float().mean()))
    assert r.examples == 120
    g = torch.autograd.functional.jacobian(lambda z: nn.functional.cross_entropy(net(z), y, reduction="sum"), x)
    x_adv = (x + 0.05 * g.sign()).clamp(0, 1)
    adv_pred = net(x_adv).argmax(1)
    run = r.run("test_sign", 0.05)
    assert run.top1 == pytest.approx(float((adv_pred == y).float().mean()))
    ok = clean_pred == y
    assert run.success_rate == pytest.approx(float((ok & (adv_pred != y)).sum() / ok.sum()))
    assert run.accuracy_ratio == pytest.approx(run.top1 / r.clean_top1)
    assert run.max_perturbation == pytest.approx(0.05, abs=1e-6)
    assert r.run("test_sign", 0.0).top1 == r.clean_top1
    # one gradient per example for the whole grid, booked as an equal share to each eps
    assert r.run("test_sign", 0.0).gradient_evaluations == 0.5
    assert run.gradient_evaluations == 0.5
    assert run.gradient_shared_across_eps and r.run("test_sign", 0.0).gradient_shared_across_eps


def test_violating_attack_is_refused_not_counted(problem):
    net, x, y = problem(**LINEAR)
    r = advframe.evaluate(net, (x, y), attacks=[Escape(), SignStep()], eps=[0.1], batch_size=40)
    bad = r.run("test_escape", 0.1)
    assert bad.top1 is None and bad.examples == 0
    assert bad.violations > 0 and bad.rejected_batches == 3
    assert {v.batch_start for v in r.violations} == {0, 40, 80}
    assert all(v.max_excess > 0.09 for v in r.violations)
    assert r.run("test_sign", 0.1).violations == 0
    with pytest.raises(ThreatViolation, match="test_escape"):
        advframe.evaluate(net, (x, y), attacks=[Escape()], eps=[0.1], strict=True)


def test_label_leaks_count_true_label_wins_over_the_predicted_twin(problem):
    net, x, y = problem(**LINEAR)
    r = advframe.evaluate(net, (x, y), attacks=[SignStep()], eps=[0.05], batch_size=120)
    gx = lambda labels: torch.autograd.functional.jacobian(  # noqa: E731
        lambda z: nn.functional.cross_entropy(net(z), labels, reduction="sum"), x)
    pred = net(x).argmax(1)
    true_ok = net((x + 0.05 * gx(y).sign()).clamp(0, 1)).argmax(1) == y
    twin_ok = net((x + 0.05 * gx(pred).sign()).clamp(0, 1)).argmax(1) == y
    assert r.run("test_sign", 0.05).label_leaks == int((true_ok & ~twin_ok).sum())


def test_targeted_random_targets_and_success(problem):
    net, x, y = problem(**LINEAR)

    class Targeted(SignStep):
        name = "test_targeted"
        targetable = True

    r = advframe.evaluate(net, (x, y), attacks=[Targeted()], eps=[0.0, 1.0], targeted=True, batch_size=60)
    from advframe.attack import random_target
    from advframe.ops import derive_seed

    targets = torch.cat([random_target(y[s:s + 60], 4, torch.Generator().manual_seed(derive_seed(0, "targets", s)))
                         for s in (0, 60)])
    assert bool((targets != y).all())
    # at eps 0 the hits are exactly the examples already classified as their target
    assert r.run("test_targeted", 0.0).success_rate == pytest.approx(float((net(x).argmax(1) == targets).float().mean()))
    assert r.run("test_targeted", 1.0).success_rate > 0.5


def test_results_do_not_depend_on_batch_size(problem):
    net, x, y = problem(**LINEAR)
    a = advframe.evaluate(net, (x, y), attacks=[SignStep()], eps=[0.03, 0.1], batch_size=7)
    b = advframe.evaluate(net, (x, y), attacks=[SignStep()], eps=[0.03, 0.1], batch_size=120)
    for ra, rb in zip(a.runs, b.runs):
        assert (ra.top1, ra.top5, ra.label_leaks) == (rb.top1, rb.top5, rb.label_leaks)


def test_resume_from_partial_state(tmp_path, problem):
    net, x, y = problem(**LINEAR)
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
    assert resumed.runs[0].top1 == full.runs[0].top1 and resumed.examples == 120
    assert not state.exists()


def test_bad_data_is_refused_with_the_index(problem):
    net, x, y = problem(**LINEAR)
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
    assert run.attack == "iter_ll" and run.violations == 0
    assert run.max_perturbation <= 8 / 255 + 1e-6
    assert run.top1 <= r.clean_top1


def test_top5_is_null_and_not_shown_for_five_classes_or_fewer(problem):
    from advframe.cli.render import eval_table
    from advframe.report import eval_document_problem, markdown

    net, x, y = problem(k=4, **LINEAR)
    doc = advframe.evaluate(net, (x, y), attacks=[SignStep()], eps=[0.05], batch_size=50).to_dict()
    assert "top5" in doc["clean"] and doc["clean"]["top5"] is None   # the key stays, with null
    assert all("top5" in r and r["top5"] is None for r in doc["runs"])
    assert eval_document_problem(doc) is None
    table = eval_table(doc)
    assert "top-5" not in [c.header for c in table.columns] and "top-5" not in str(table.title)
    assert "top-5" not in markdown([doc], [])

    net, x, y = problem(k=6, **LINEAR)
    doc = advframe.evaluate(net, (x, y), attacks=[SignStep()], eps=[0.05], batch_size=50).to_dict()
    assert doc["clean"]["top5"] is not None and doc["runs"][0]["top5"] is not None
    assert "top-5" in [c.header for c in eval_table(doc).columns] and "top-5" in markdown([doc], [])


@pytest.mark.parametrize("bad", [42, "mnist_cnn_standard", object()])
def test_a_model_that_is_not_a_module_is_named_with_the_way_to_load_one(bad):
    with pytest.raises(TypeError, match=r"got (int 42|str 'mnist_cnn_standard'|object <object).*advframe\.load_model"):
        advframe.evaluate(bad, "mnist5k", attacks=["fgsm"], eps=[0.1], limit=10)


#: The keys of a run's entry in the results document, in their order (DESIGN.md's contract).
RUN_KEYS = ["attack", "eps", "norm", "targeted", "params", "top1", "top5", "success_rate", "accuracy_ratio",
            "label_leaks", "max_perturbation", "violations", "gradient_evaluations", "forward_queries", "seconds",
            "examples", "rejected_batches", "rejected_examples", "failed", "uses_true_label",
            "gradient_shared_across_eps", "gradient_evaluations_total", "forward_queries_total"]


def test_runs_are_typed_rows_whose_to_dict_is_the_document_entry(problem):
    from advframe.evaluation import EvalResult, RunRow

    net, x, y = problem(**LINEAR)
    r = advframe.evaluate(net, (x, y), attacks=[SignStep()], eps=[0.0, 0.05], batch_size=40)
    run = r.run("test_sign", 0.05)
    assert isinstance(run, RunRow) and run is r.runs[1] and all(isinstance(row, RunRow) for row in r.runs)
    doc = r.to_dict()
    assert [list(e) for e in doc["runs"]] == [RUN_KEYS, RUN_KEYS]  # no worst-case keys outside a worst case
    assert doc["runs"][1] == {k: getattr(run, k) for k in RUN_KEYS}
    assert json.loads(json.dumps(doc))["runs"] == doc["runs"]
    # a document's entry becomes the same row; a key a plugin added is kept, after the others
    assert RunRow.from_dict(doc["runs"][1]) == run
    entry = {**doc["runs"][1], "worst_case_step": 2, "broke": 3, "robust_after": None, "plugin_score": 0.5}
    row = RunRow.from_dict(entry)
    assert (row.worst_case_step, row.broke, row.robust_after, row.extra) == (2, 3, None, {"plugin_score": 0.5})
    assert list(row.to_dict().items()) == list(entry.items())
    assert RunRow.of(row) is row and RunRow.of(entry) == row
    # an EvalResult built from a document's entries holds rows and gives the same document back
    again = EvalResult(model=doc["model"], dataset=doc["dataset"], split=doc["split"], examples=doc["examples"],
                       clean_top1=doc["clean"]["top1"], clean_top5=doc["clean"]["top5"], runs=doc["runs"],
                       meta={k: doc[k] for k in ("seed", "batch_size", "bounds", "target_mode", "processes")})
    assert again.run("test_sign", 0.05) == run and json.dumps(again.to_dict()) == json.dumps(doc)
    with pytest.raises(DataError, match="has no eps, norm"):
        RunRow.from_dict({"attack": "fgsm"})
