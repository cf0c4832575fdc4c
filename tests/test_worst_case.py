"""Worst-case robust accuracy: the invariant, early exit, resume, two processes, the CLI."""

import json

import pytest

import advframe
from tests.helpers import invoke, run_cli

# Attacks whose result for an example does not depend on the other examples of its batch
# (no random draw shaped like the batch), so running one on fewer examples changes nothing.
DETERMINISTIC = ["fgsm", "iter_basic", "deepfool", "pgd"]
PARAMS = {"iter_basic": {"steps": 5}, "pgd": {"steps": 5, "random_start": False}, "deepfool": {"max_iter": 5}}


def params(attacks):
    return {a: PARAMS[a] for a in attacks if a in PARAMS}


# the problem fixture's MLP: 16 hidden units, inputs over the whole box, every 7th label a clean mistake
MLP = {"d": 10, "hidden": 16, "margin": 0.0, "wrong": slice(None, None, 7)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_worst_case_is_at_most_every_single_attack(seed, problem):
    net, x, y = problem(seed=seed, **MLP)
    grid = [0.02, 0.05, 0.1, 0.3]
    worst = advframe.evaluate(net, (x, y), attacks=DETERMINISTIC, eps=grid, params=PARAMS, batch_size=25,
                              worst_case=True).to_dict()
    single = advframe.evaluate(net, (x, y), attacks=DETERMINISTIC, eps=grid, params=PARAMS, batch_size=25,
                               label_leaks=False).to_dict()
    for w in worst["worst_case"]:
        alone = [r["top1"] for r in single["runs"] if r["eps"] == w["eps"]]
        assert w["top1"] <= min(alone) + 1e-12, (w, alone)
        assert w["top1"] <= w["clean_top1"]
        # the examples broken add up: clean-correct minus every attack's additions is what survives
        survivors = round(w["clean_top1"] * w["examples"]) - sum(w["broke"].values())
        assert survivors == round(w["top1"] * w["examples"])
        # a later attack only attacks what every earlier one left robust
        attacked = [w["attacked"][a] for a in DETERMINISTIC]
        broke = [w["broke"][a] for a in DETERMINISTIC]
        for i in range(1, len(attacked)):
            assert attacked[i] == attacked[i - 1] - broke[i - 1]
    # where the first attack alone breaks everything, the others spend nothing
    top = worst["worst_case"][-1]
    if top["attacked"][DETERMINISTIC[1]] == 0:
        later = [r for r in worst["runs"] if r["eps"] == top["eps"] and r["attack"] != DETERMINISTIC[0]]
        assert all(r["gradient_evaluations"] == 0 for r in later)


def test_early_exit_shows_in_the_pass_count(problem):
    net, x, y = problem(**MLP)
    doc = advframe.evaluate(net, (x, y), attacks=["fgsm", "iter_basic"], eps=[0.3], params=params(["iter_basic"]),
                            worst_case=True).to_dict()
    w = doc["worst_case"][0]
    clean_correct = round(w["clean_top1"] * w["examples"])
    assert w["attacked"]["fgsm"] == clean_correct
    assert w["attacked"]["iter_basic"] == clean_correct - w["broke"]["fgsm"]
    # fgsm: one pass over its examples; iter_basic: 5 passes over the survivors only
    expected = (clean_correct * 1 + w["attacked"]["iter_basic"] * 5) / w["examples"]
    assert w["gradient_evaluations"] == pytest.approx(expected)
    # the cost saved, per attack: the clean-correct examples earlier attacks had broken already
    assert w["spared"] == {"fgsm": 0, "iter_basic": w["broke"]["fgsm"]} and w["broke"]["fgsm"] > 0
    # and where the passes went: per attack, adding up to the suite's totals
    by_attack = w["gradient_evaluations_by_attack"]
    assert by_attack["fgsm"] == pytest.approx(clean_correct / w["examples"])
    assert by_attack["iter_basic"] == pytest.approx(w["attacked"]["iter_basic"] * 5 / w["examples"])
    assert sum(by_attack.values()) == pytest.approx(w["gradient_evaluations"])
    assert sum(w["forward_queries_by_attack"].values()) == pytest.approx(w["forward_queries"])
    assert sum(w["seconds_by_attack"].values()) == pytest.approx(w["seconds"])


def test_an_attack_named_twice_is_refused(problem):
    # its results are reported by name: the second run's counts would overwrite the first's
    net, x, y = problem(**MLP)
    with pytest.raises(advframe.AdvframeError, match="attack 'fgsm' is named twice in the worst case"):
        advframe.evaluate(net, (x, y), attacks=["fgsm", "pgd", "fgsm"], eps=[0.1], worst_case=True)


def test_cli_suite_runs_prints_the_worst_case_table_and_resumes(tmp_path):
    out = tmp_path / "w.json"
    args = ["eval", "--suite", "autoattack_fast", "--param", "apgd_ce.steps=4", "--param", "apgd_t.steps=4",
            "--param", "apgd_t.n_target_classes=2", "--eps", "0.05", "--eps", "0.3", "--limit", "30",
            "--no-progress", "--no-checks", "--output", str(out)]
    r = run_cli(*args, env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert "worst case" in r.stdout and "broke" in r.stdout and "attacked" in r.stdout
    doc = json.loads(out.read_text())
    assert [w["attacks"] for w in doc["worst_case"]] == [["apgd_ce", "apgd_t"]] * 2
    assert all(r["worst_case_step"] in (1, 2) for r in doc["runs"])
    # --resume on the finished document's command starts over and gives the same counts
    r = run_cli(*args, "--resume", env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    again = json.loads(out.read_text())
    keys = ("eps", "top1", "broke", "attacked", "spared", "gradient_evaluations")
    assert [{k: w[k] for k in keys} for w in again["worst_case"]] == [{k: w[k] for k in keys} for w in doc["worst_case"]]


def test_worst_case_resumes_from_its_partial_state(tmp_path, problem):
    net, x, y = problem(**MLP)
    state = tmp_path / "w.json.partial"
    kw = dict(attacks=["fgsm", "iter_basic"], eps=[0.05, 0.1], params=params(["iter_basic"]), batch_size=20,
              worst_case=True)
    full = advframe.evaluate(net, (x, y), **kw).to_dict()

    class Interrupt(Exception):
        pass

    def stop(event):
        if event.completed == 40:  # examples: two batches of 20
            raise Interrupt

    with pytest.raises(Interrupt):
        advframe.evaluate(net, (x, y), state_path=state, progress=stop, **kw)
    resumed = advframe.evaluate(net, (x, y), state_path=state, **kw).to_dict()
    strip = [{k: v for k, v in w.items() if not k.startswith("seconds")} for w in full["worst_case"]]
    assert [{k: v for k, v in w.items() if not k.startswith("seconds")} for w in resumed["worst_case"]] == strip


def test_targeted_worst_case_is_refused(problem):
    net, x, y = problem(**MLP)
    with pytest.raises(advframe.AdvframeError, match="untargeted"):
        advframe.evaluate(net, (x, y), attacks=["fgsm"], eps=[0.1], worst_case=True, targeted=True)


def test_cli_suite_and_attack_are_exclusive_and_unknown_suite_suggests():
    r = invoke(["eval", "--suite", "autoattack", "--attack", "fgsm", "--no-progress"])
    assert r.code == 2 and len(r.lines) == 1 and "drop --attack fgsm" in r.output
    r = invoke(["eval", "--suite", "autoatack", "--no-progress"])
    assert r.code == 2 and len(r.lines) == 1 and "did you mean 'autoattack'" in r.output


@pytest.mark.slow
def test_two_process_worst_case_equals_one_process(tmp_path):
    # apgd_ce draws a random start: the shards must draw what one process draws
    args = ["eval", "--attack", "fgsm", "--attack", "apgd_ce", "--param", "apgd_ce.steps=5", "--worst-case",
            "--eps", "0.1", "--eps", "0.2", "--limit", "200", "--batch-size", "50", "--no-progress", "--no-checks"]
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    r1 = run_cli(*args, "--output", str(one), env={"OMP_NUM_THREADS": "1"})
    assert r1.returncode == 0, r1.stderr
    r2 = run_cli(*args, "--output", str(two), "--devices", "2", env={"OMP_NUM_THREADS": "1"})
    assert r2.returncode == 0, r2.stderr
    d1, d2 = json.loads(one.read_text()), json.loads(two.read_text())
    keys = ("eps", "examples", "top1", "broke", "attacked", "gradient_evaluations", "violations")
    assert [{k: w[k] for k in keys} for w in d2["worst_case"]] == [{k: w[k] for k in keys} for w in d1["worst_case"]]
    assert d2["processes"] == 2


def test_worst_case_runs_are_rows_with_their_step_fields(problem):
    from advframe.evaluation import RunRow

    net, x, y = problem(**MLP)
    res = advframe.evaluate(net, (x, y), attacks=["fgsm", "iter_basic"], eps=[0.3], params=params(["iter_basic"]),
                            worst_case=True)
    first, second = res.run("fgsm", 0.3), res.run("iter_basic", 0.3)
    assert (first.worst_case_step, second.worst_case_step) == (1, 2)
    w = res.to_dict()["worst_case"][0]
    assert (first.broke, second.broke) == (w["broke"]["fgsm"], w["broke"]["iter_basic"])
    assert second.robust_after == pytest.approx(w["top1"])
    entries = res.to_dict()["runs"]
    assert list(entries[0])[-3:] == ["worst_case_step", "broke", "robust_after"]
    assert [RunRow.from_dict(e) for e in entries] == res.runs
