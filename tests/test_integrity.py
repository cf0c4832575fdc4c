"""The engine refuses attacks that misbehave, and keeps every other attack's results."""

import json

import pytest

import advframe
from advframe.attack import Attack
from tests.helpers import run_cli


class InPlace(Attack):
    """Hostile: inverts the images it is given, in place, and returns them unchanged-looking."""

    name = "test_in_place"

    def perturb(self, model, x, y, threat, target):
        x.mul_(-1).add_(1)
        return x.clone()


class Raises(Attack):
    name = "test_raises"

    def perturb(self, model, x, y, threat, target):
        raise RuntimeError("boom")


def bad_output(kind):
    class Bad(Attack):
        name = f"test_bad_{kind}"

        def perturb(self, model, x, y, threat, target):
            return {"none": None, "dtype": x.double(), "shape": x[:, :-1], "fewer": x[:-1]}[kind]

    return Bad()


def run(attacks, x, y, net):
    return advframe.evaluate(net, (x, y), attacks=attacks, eps=[0.1], batch_size=30, label_leaks=False)


def test_in_place_attack_is_refused_and_the_next_attack_sees_a_clean_batch(problem):
    net, x, y = problem()
    alone = run(["fgsm"], x, y, net).run("fgsm", 0.1)
    res = run([InPlace(), "fgsm"], x.clone(), y, net)
    hostile = res.run("test_in_place", 0.1)
    assert hostile.top1 is None and hostile.failed and hostile.rejected_batches == 2
    assert all("wrote into its input" in v.reason for v in res.violations)
    assert res.run("fgsm", 0.1).top1 == alone.top1  # not the damaged batch
    assert res.clean_top1 == 1.0


def test_an_attack_that_raises_between_two_good_ones_leaves_them_intact(problem):
    net, x, y = problem()
    good = {name: run([name], x, y, net).run(name, 0.1) for name in ("fgsm", "iter_basic")}
    res = run(["fgsm", Raises(), "iter_basic"], x, y, net)
    assert res.run("test_raises", 0.1).failed and res.run("test_raises", 0.1).top1 is None
    assert any("raised RuntimeError: boom" in v.reason for v in res.violations)
    for name, r in good.items():
        assert res.run(name, 0.1).top1 == r.top1 and not res.run(name, 0.1).failed


@pytest.mark.parametrize("kind, why", [("none", "NoneType instead of a tensor"), ("dtype", "dtype torch.float64"),
                                       ("shape", "shape (30, 11)"), ("fewer", "shape (29, 12)")])
def test_bad_outputs_are_refused_with_the_reason(kind, why, problem):
    net, x, y = problem()
    res = run([bad_output(kind)], x, y, net)
    assert res.runs[0].failed and res.runs[0].top1 is None
    assert why in res.violations[0].reason


PLUGIN = '''
import advframe
from advframe.attack import Attack

class Broken(Attack):
    name = "broken_attack"
    uses_true_label = False

    def perturb(self, model, x, y, threat, target):
        raise ValueError("bad day")

@advframe.hookimpl
def register_attacks(register):
    register(Broken)
'''


def test_cli_writes_the_document_marks_the_run_failed_and_exits_non_zero(fake_plugins, tmp_path):
    fake_plugins("fakeplug-broken", "fakeplug_brokenattack", PLUGIN, entry="brokenplug")
    out = tmp_path / "r.json"
    r = run_cli("eval", "--attack", "fgsm", "--attack", "broken_attack", "--attack", "step_ll", "--eps", "0.1",
                "--limit", "20", "--no-progress", "--no-checks", "--output", str(out))
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "broken_attack" in r.stderr and "brokenplug" in r.stderr
    doc = json.loads(out.read_text())
    runs = {run["attack"]: run for run in doc["runs"]}
    assert runs["broken_attack"]["failed"] and not runs["fgsm"]["failed"] and not runs["step_ll"]["failed"]
    assert runs["fgsm"]["top1"] is not None and runs["step_ll"]["top1"] is not None


@pytest.mark.parametrize("attack", ["pgd", "iter_ll", "apgd_ce", "mim"])
def test_an_eps_beyond_the_box_is_the_whole_box_not_an_overflow(attack, problem):
    # eps 1e300 overflows float32 (inf steps, inf - inf = NaN); its ball ∩ [0, 1] is the box,
    # the same set as eps 1 (the box's span), so every batch is counted and the results equal
    net, x, y = problem()
    huge = advframe.evaluate(net, (x, y), attacks=[attack], eps=[1e300], batch_size=30, label_leaks=False)
    span = advframe.evaluate(net, (x, y), attacks=[attack], eps=[1.0], batch_size=30, label_leaks=False)
    run_huge, run_span = huge.run(attack, 1e300), span.run(attack, 1.0)
    assert run_huge.rejected_batches == 0 and not run_huge.failed
    assert run_huge.top1 == run_span.top1
