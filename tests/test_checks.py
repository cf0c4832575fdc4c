"""The honesty checks: closed-form statistics, hand-made results, the embedded model
(every applicable check passes) and three gradient-masking / stochastic wrappers that
look robust by accuracy but trip the relevant checks."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn
from torch.autograd import grad as imported_grad  # bound before any check patches torch.autograd.grad

import advframe
import advframe_checks.probe as probe_module
from advframe.checks import Check, available_checks, run_checks
from advframe.errors import CheckpointError, ParameterError, UnknownNameError
from advframe_checks.runner import CHECKS
from advframe_checks.runner import run_checks as run_builtin_checks
from advframe_checks.stats import Z99, excess
from advframe.evaluation import EvalResult
from advframe.model import Classifier
from advframe.registry import Registry

SUBSET = 200
EPS = [0.0, 0.1, 0.3]
#: Fast settings for the evaluation itself (the checks use their own on the probe).
FAST = {"iter_basic": {"alpha": 0.05, "steps": 10}, "iter_ll": {"alpha": 0.05, "steps": 10}}
ATTACKS = ["fgsm", "iter_basic", "step_ll", "iter_ll"]


def _embedded() -> tuple[nn.Module, object] | None:
    try:
        model = advframe.load_model("mnist_cnn_standard")
        data = advframe.load_dataset("mnist5k", "test").take(SUBSET)
    except (UnknownNameError, CheckpointError):  # the zoo plugin or its weights are not installed yet
        return None
    return model, data


def _synthetic() -> tuple[nn.Module, object]:
    """A small MLP on 10 noisy prototypes in [0, 1]^64 (used until the zoo is installed)."""
    g = torch.Generator().manual_seed(0)
    protos = torch.rand(10, 64, generator=g)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 10, (n,), generator=g)
        return (protos[y] + 0.25 * torch.randn(n, 64, generator=g)).clamp(0, 1), y

    xtr, ytr = make(3000)
    x, y = make(SUBSET)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(20):
        for i in range(0, len(xtr), 200):
            opt.zero_grad()
            nn.functional.cross_entropy(net(xtr[i:i + 200]), ytr[i:i + 200]).backward()
            opt.step()
    return net.eval(), advframe.LabeledData(x, y, 10, name="synthetic")


@pytest.fixture(scope="module")
def standard():
    return _embedded() or _synthetic()


class Quantised(Classifier):
    """Rounds inputs to 8 levels with torch.round: zero input gradient, no straight-through."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(torch.round(x * 7) / 7)


class Saturated(Classifier):
    """Logits divided by a temperature of 1e-3 before loss and scores: saturated softmax."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x) / 1e-3


class Noisy(Classifier):
    """Adds Gaussian input noise at inference: a stochastic defense."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net((x + 0.3 * torch.randn_like(x)).clamp(0, 1))


def evaluate_and_check(model, data, attacks=ATTACKS, eps=EPS, label_leaks=True, **kwargs):
    params = {name: p for name, p in FAST.items() if name in attacks}
    result = advframe.evaluate(model, data, attacks=attacks, eps=eps, params=params, limit=SUBSET, batch_size=SUBSET,
                               label_leaks=label_leaks)
    checks = run_checks(model, data, result, subset=SUBSET, **kwargs)
    return result, {c.name: c for c in checks}


# -- the bound --------------------------------------------------------------------------
def test_two_proportion_z_matches_closed_form():
    e = excess(0.6, 100, 0.5, 100)
    pooled = 0.55
    assert e.z == pytest.approx(0.1 / math.sqrt(pooled * (1 - pooled) * 0.02))
    assert not e.significant and e.z < Z99
    assert excess(0.7, 200, 0.5, 200).significant  # z = 4.1
    assert excess(0.5, 200, 0.7, 200).z < 0
    assert excess(0.0, 50, 0.0, 80).z == 0.0 and excess(1.0, 5, 1.0, 5).z == 0.0
    assert Z99 == pytest.approx(2.3263, abs=1e-4)
    with pytest.raises(ValueError):
        excess(0.5, 0, 0.5, 10)


# -- hand-made results: the run-reading logic ------------------------------------------------
def _run(attack, eps, top1, n=200, **extra):
    return {"attack": attack, "eps": eps, "norm": "linf", "targeted": False, "params": {}, "top1": top1,
            "top5": 1.0, "success_rate": 0.0, "accuracy_ratio": None, "label_leaks": extra.pop("label_leaks", None),
            "max_perturbation": eps, "violations": extra.pop("violations", 0), "gradient_evaluations": 1.0,
            "seconds": 0.0, "examples": n, "uses_true_label": True, **extra}


def _fake(runs, clean=0.9, n=200):
    return EvalResult(model="m", dataset="d", split="test", examples=n, clean_top1=clean, clean_top5=1.0, runs=runs,
                      meta={"seed": 0, "bounds": [0.0, 1.0]})


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    x = torch.rand(40, 6)
    net = nn.Linear(6, 3)
    return net, (x, net(x).argmax(1).detach())


def _status(tiny, runs, name, **kw):
    net, data = tiny
    (check,) = run_checks(net, data, _fake(runs, **kw), only=[name])
    return check


def test_worst_case_steps_measured_on_survivors_are_not_compared(tiny):
    # a later worst-case step at eps 0.3 ran on 20 survivors, at 0.1 on 150: its top-1 "rises"
    runs = [_run("pgd", 0.1, 0.20, worst_case_step=1), _run("pgd", 0.3, 0.05, worst_case_step=1),
            _run("fgsm", 0.1, 0.20, n=150, worst_case_step=2), _run("fgsm", 0.3, 0.90, n=20, worst_case_step=2)]
    assert _status(tiny, runs, "monotone_in_eps").status == "not_applicable"
    plain = [_run("fgsm", 0.1, 0.20), _run("fgsm", 0.3, 0.90)]
    assert _status(tiny, plain, "monotone_in_eps").status == "warn"


def test_monotone_warns_on_a_significant_rise_only(tiny):
    rise = [_run("pgd", 0.1, 0.20), _run("pgd", 0.3, 0.50)]
    c = _status(tiny, rise, "monotone_in_eps")
    assert c.status == "warn" and "20.0 %" in c.evidence and "50.0 %" in c.evidence and "z = " in c.evidence
    assert _status(tiny, [_run("pgd", 0.1, 0.20), _run("pgd", 0.3, 0.22)], "monotone_in_eps").status == "pass"
    assert _status(tiny, [_run("pgd", 0.1, 0.2)], "monotone_in_eps").status == "not_applicable"


def test_eps_zero_run_must_equal_clean(tiny):
    assert _status(tiny, [_run("pgd", 0.0, 0.9)], "eps_zero_clean").status == "pass"
    c = _status(tiny, [_run("pgd", 0.0, 0.85)], "eps_zero_clean")
    assert c.status == "warn" and "85.0 %" in c.evidence and "90.0 %" in c.evidence
    assert _status(tiny, [_run("pgd", 0.0, 0.9, violations=3)], "eps_zero_clean").status == "warn"


def test_iterative_weaker_than_one_step_warns(tiny):
    c = _status(tiny, [_run("iter_basic", 0.3, 0.60), _run("fgsm", 0.3, 0.30)], "iterative_beats_one_step")
    assert c.status == "warn" and "iter_basic is weaker than fgsm" in c.evidence
    c = _status(tiny, [_run("iter_basic", 0.3, 0.05), _run("fgsm", 0.3, 0.30)], "iterative_beats_one_step")
    assert "iter_basic is at least as strong as fgsm" in c.evidence


def test_noise_beating_whitebox_warns(tiny):
    c = _status(tiny, [_run("pgd", 0.3, 0.8), _run("rand_sign", 0.3, 0.4)], "whitebox_beats_noise")
    assert c.status == "warn" and "80.0 %" in c.evidence and "40.0 %" in c.evidence
    assert _status(tiny, [_run("pgd", 0.3, 0.1), _run("rand_sign", 0.3, 0.8)], "whitebox_beats_noise").status == "pass"
    # a black-box attack is not the strongest white-box one, however low its top-1
    c = _status(tiny, [_run("pgd", 0.3, 0.8), _run("square", 0.3, 0.1), _run("rand_sign", 0.3, 0.4)],
                "whitebox_beats_noise")
    assert c.status == "warn" and "white-box attack pgd" in c.evidence, c.evidence


def test_label_leaking_warns_above_clean(tiny):
    c = _status(tiny, [_run("fgsm", 0.3, 0.99, label_leaks=40)], "label_leaking", clean=0.8)
    assert c.status == "warn" and "99.0 %" in c.evidence
    c = _status(tiny, [_run("fgsm", 0.3, 0.3, label_leaks=0)], "label_leaking", clean=0.8)
    assert c.status == "pass" and "label leaks counted by the evaluation: 0" in c.evidence


def test_blackbox_beating_whitebox_beyond_the_bound_warns(tiny):
    assert probe_module.plugins.registry().get("attacks", "square").trait("black_box")
    beaten = [_run("pgd", 0.3, 0.50), _run("fgsm", 0.3, 0.60), _run("square", 0.3, 0.20)]  # z = 6.2
    c = _status(tiny, beaten, "blackbox_beats_whitebox")
    assert c.status == "warn", c.evidence
    assert "square leaves top-1 20.0 %" in c.evidence and "pgd 50.0 %" in c.evidence and "z = " in c.evidence
    within = [_run("pgd", 0.3, 0.50), _run("fgsm", 0.3, 0.60), _run("square", 0.3, 0.45)]  # z = 1.0
    c = _status(tiny, within, "blackbox_beats_whitebox")
    assert c.status == "pass" and "square leaves top-1 45.0 %" in c.evidence, c.evidence
    # no pair: another eps, only noise beside it, no black-box run at all
    for runs in ([_run("pgd", 0.1, 0.5), _run("square", 0.3, 0.2)], [_run("rand_sign", 0.3, 0.9), _run("square", 0.3, 0.2)],
                 [_run("pgd", 0.3, 0.5)]):
        assert _status(tiny, runs, "blackbox_beats_whitebox").status == "not_applicable"


def _step(attack, step, attacked, broke, robust_after, eps=0.3):
    """A run of a worst-case evaluation: ``attacked`` examples, ``broke`` of them broken."""
    return _run(attack, eps, (attacked - broke) / attacked, n=attacked, worst_case_step=step, broke=broke,
                robust_after=robust_after)


def test_blackbox_lowering_the_worst_case_beyond_the_bound_warns(tiny):
    # 200 examples, 180 clean-correct; apgd_ce leaves 80 robust, square then breaks 40 (40 % -> 20 %, z = 4.4)
    c = _status(tiny, [_step("apgd_ce", 1, 180, 100, 0.40), _step("square", 2, 80, 40, 0.20)],
                "blackbox_beats_whitebox")
    assert c.status == "warn" and "worst case" in c.evidence and "40.0 %" in c.evidence and "20.0 %" in c.evidence
    # ... or only 4 of them (40 % -> 38 %, z = 0.4)
    c = _status(tiny, [_step("apgd_ce", 1, 180, 100, 0.40), _step("square", 2, 80, 4, 0.38)],
                "blackbox_beats_whitebox")
    assert c.status == "pass" and "38.0 %" in c.evidence, c.evidence
    # square first has no white-box step before it
    c = _status(tiny, [_step("square", 1, 180, 100, 0.40), _step("apgd_ce", 2, 80, 40, 0.20)],
                "blackbox_beats_whitebox")
    assert c.status == "not_applicable"


class Softmaxed(Classifier):
    """Returns probabilities (or, with ``log``, log-probabilities) instead of logits."""

    def __init__(self, net: nn.Module, log: bool = False):
        super().__init__()
        self.net, self.log = net, log

    def forward(self, x):
        return (torch.log_softmax if self.log else torch.softmax)(self.net(x), dim=1)


def test_probabilities_instead_of_logits_warn(tiny):
    net, data = tiny
    result = _fake([_run("pgd", 0.3, 0.1)])
    (c,) = run_checks(Softmaxed(net), data, result, only=["logits_not_probabilities"])
    assert c.status == "warn" and "40 of 40 rows" in c.evidence, c.evidence
    (c,) = run_checks(net, data, result, only=["logits_not_probabilities"])
    assert c.status == "pass" and "0 of 40 rows" in c.evidence, c.evidence
    (c,) = run_checks(Softmaxed(net, log=True), data, result, only=["logits_not_probabilities"])
    assert c.status == "pass", c.evidence


class Purifying(Classifier):
    """A dynamic defense: one signed input-gradient step on the log-sum-exp of the logits in forward."""

    def __init__(self, net: nn.Module, how: str):
        super().__init__()
        self.net, self.how = net, how

    def forward(self, x):
        with torch.enable_grad():
            z = x.detach().clone().requires_grad_(True)
            energy = self.net(z).logsumexp(1).sum()
            if self.how == "grad":
                (g,) = torch.autograd.grad(energy, z)
            elif self.how == "backward":
                energy.backward()
                g = z.grad
            else:  # a grad imported by name before the check patched torch.autograd
                (g,) = imported_grad(energy, z)
        return self.net(x + 0.01 * g.sign())


@pytest.mark.parametrize("how", ["grad", "backward", "imported"])
def test_gradient_calls_in_forward_warn(tiny, how):
    net, data = tiny
    originals = (torch.autograd.grad, torch.autograd.backward, torch.Tensor.backward)
    result = _fake([_run("pgd", 0.3, 0.1)])
    (c,) = run_checks(Purifying(net, how), data, result, only=["no_gradient_in_forward"])
    assert c.status == "warn" and "1 time(s)" in c.evidence, c.evidence
    assert (torch.autograd.grad, torch.autograd.backward, torch.Tensor.backward) == originals  # restored
    (c,) = run_checks(net, data, result, only=["no_gradient_in_forward"])
    assert c.status == "pass", c.evidence
    # gradient calls outside the model's forward are not the model's
    x = torch.rand(3, 6, requires_grad=True)
    assert torch.autograd.grad(net(x).sum(), x)[0].shape == x.shape


def test_unregistered_attacks_make_checks_not_applicable(tiny, monkeypatch):
    monkeypatch.setattr(probe_module.plugins, "registry", lambda: Registry())
    net, data = tiny
    checks = {c.name: c for c in run_builtin_checks(net, data, _fake([_run("pgd", 0.3, 0.1)]))}
    for name in ("unbounded_attack_wins", "whitebox_beats_noise", "label_leaking", "iterative_beats_one_step",
                 "eps_zero_clean"):
        assert checks[name].status == "not_applicable", name
        assert "registers" in checks[name].evidence
    assert checks["gradient_health"].status == "pass"


def test_run_checks_refuses_bad_arguments(tiny):
    net, data = tiny
    with pytest.raises(ParameterError, match="subset"):
        run_checks(net, data, _fake([]), subset=0)
    with pytest.raises(ParameterError, match="unknown check"):
        run_checks(net, data, _fake([]), only=["nope"])


# -- the model under test and the wrappers ----------------------------------------------
def test_every_applicable_check_passes_on_the_standard_model(standard):
    model, data = standard
    result, checks = evaluate_and_check(model, data, transfer_source=model)
    assert list(checks) == list(CHECKS)
    assert result.checks == [c.to_dict() for c in checks.values()]
    for c in checks.values():
        assert set(c.to_dict()) == {"name", "status", "evidence", "source"}
        assert c.evidence and c.source
        if c.name == "blackbox_beats_whitebox":  # the evaluation ran no black-box attack
            assert c.status == "not_applicable", c.evidence
            continue
        assert c.status == "pass", f"{c.name}: {c.evidence}"
    # the embedded model returns logits and its forward pass computes no gradient
    assert checks["logits_not_probabilities"].status == "pass"
    assert checks["no_gradient_in_forward"].status == "pass"
    assert "z = " in checks["monotone_in_eps"].evidence
    assert f"first {SUBSET} examples" in checks["unbounded_attack_wins"].evidence
    assert result.run("iter_basic", 0.3).top1 < 0.5  # the standard model is not robust


def test_unbounded_attack_breaks_the_robust_zoo_model():
    """A model robust at eps 0.3 is not masked, and the probe's budget must show it: its 30
    steps break every digit of the shipped robust model (10 steps left 13 %), while the
    masked wrappers below stay above the threshold at any budget."""
    model = advframe.load_model("mnist_cnn_robust")
    data = advframe.load_dataset("mnist5k", "test").take(SUBSET)
    (c,) = run_checks(model, data, _fake([_run("pgd", 0.3, 0.9)]), subset=SUBSET, only=["unbounded_attack_wins"])
    assert c.status == "pass", c.evidence
    assert "30 steps of 0.1" in c.evidence and "top-1 0.0 %" in c.evidence, c.evidence


@pytest.mark.parametrize("wrapper", [Quantised, Saturated])
def test_masked_gradients_look_robust_but_trip_checks(standard, wrapper):
    net, data = standard
    model = wrapper(net).eval()
    result, checks = evaluate_and_check(model, data, attacks=["fgsm", "iter_basic"], eps=[0.1, 0.3],
                                         label_leaks=False)
    # robust by its accuracy ...
    assert result.run("iter_basic", 0.3).top1 > 0.8
    assert result.run("fgsm", 0.3).top1 > 0.8
    # ... but the checks see through it
    assert checks["gradient_health"].status == "warn", checks["gradient_health"].evidence
    assert checks["unbounded_attack_wins"].status == "warn", checks["unbounded_attack_wins"].evidence
    assert checks["deterministic_predictions"].status == "pass"
    assert checks["eps_zero_clean"].status == "pass"


def test_stochastic_model_trips_the_randomness_check(standard):
    net, data = standard
    model = Noisy(net).eval()
    result = advframe.evaluate(model, data, attacks=["fgsm"], eps=[0.1], limit=SUBSET, batch_size=SUBSET)
    (check,) = run_checks(model, data, result, only=["deterministic_predictions"])
    assert check.status == "warn" and "Expectation over Transformation" in check.evidence
    (plain,) = run_checks(net, data, result, only=["deterministic_predictions"])
    assert plain.status == "pass"


def test_checks_do_not_disturb_the_global_random_state(tiny):
    net, data = tiny
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    run_checks(net, data, _fake([_run("pgd", 0.3, 0.1)]), only=["deterministic_predictions", "gradient_health"])
    assert torch.equal(torch.rand(3), expected)


# -- the CLI --------------------------------------------------------------------------------
def test_cli_shows_checks_and_writes_them(tmp_path):
    if _embedded() is None:
        pytest.skip("the embedded model (advframe_zoo) is not installed")
    from typer.testing import CliRunner

    from advframe.cli.app import build_app

    out = tmp_path / "r.json"
    res = CliRunner().invoke(build_app(), ["eval", "--attack", "fgsm", "--eps", "0.1", "--eps", "0.3", "--limit",
                                           "200", "--device", "cpu", "--no-progress", "--output", str(out),
                                           "--checks-detail"])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert [c["name"] for c in doc["checks"]] == list(CHECKS)
    assert all(c["status"] in ("pass", "not_applicable") for c in doc["checks"]), doc["checks"]
    assert all(name in res.output for name in CHECKS) and "checks" in res.output  # every check, with its evidence
    res = CliRunner().invoke(build_app(), ["eval", "--attack", "fgsm", "--eps", "0.1", "--limit", "50",
                                           "--device", "cpu", "--no-progress", "--no-checks", "--output", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["checks"] == []
    assert "gradient_health" not in res.output


class _InputRangeChecker:
    """A third-party checker: one check reading only the results."""

    name = "input_range"
    checks = ("clean_not_perfect",)

    @staticmethod
    def run(model, data, result, only, **options):
        status = "warn" if result.clean_top1 == 1.0 else "pass"
        return [Check("clean_not_perfect", status, f"clean top-1 {result.clean_top1}", "test")]


def _checker_plugin(checker):
    import types

    module = types.ModuleType("thirdparty_checks")

    @advframe.hookimpl
    def register_checks(register):
        register(checker)

    module.register_checks = register_checks
    return module


def test_a_third_party_checker_runs_beside_the_built_in_one(tiny, monkeypatch):
    from advframe import plugins

    host = plugins.host()
    host.add(_checker_plugin(_InputRangeChecker), "thirdparty_checks")
    try:
        assert available_checks()["clean_not_perfect"] == "input_range"
        assert available_checks()["gradient_health"] == "honesty"
        net, data = tiny
        result = _fake([_run("pgd", 0.3, 0.1)], clean=1.0)
        checks = run_checks(net, data, result, only=["gradient_health", "clean_not_perfect"])
        assert [c.name for c in checks] == ["gradient_health", "clean_not_perfect"]
        assert checks[1].status == "warn" and result.checks[1]["name"] == "clean_not_perfect"
    finally:
        host.registry.remove_plugin("thirdparty_checks")
        host.plugins.pop("thirdparty_checks", None)
    assert "clean_not_perfect" not in available_checks()


def test_a_checker_taking_a_built_in_check_name_or_without_checks_is_refused(monkeypatch):
    from advframe.plugins import PluginHost

    monkeypatch.delenv("ADVFRAME_STRICT_PLUGINS", raising=False)

    class Impostor(_InputRangeChecker):
        name = "impostor"
        checks = ("gradient_health",)

    class Empty(_InputRangeChecker):
        name = "empty"
        checks = ()

    host = PluginHost()
    host.load_entry_points()
    info = host.add(_checker_plugin(Impostor), "impostor_plugin")
    assert "check 'gradient_health' is already offered by plugin 'checks'" in info.errors[0]
    info = host.add(_checker_plugin(Empty), "empty_plugin")
    assert "'checks' must be a non-empty tuple" in info.errors[0]
    assert host.registry.names("checks") == ["honesty"]


def test_checks_read_a_documents_entries_as_rows(tiny):
    # a result holding a loaded document's entries (dicts, one with a key a plugin added) is read like rows
    from types import SimpleNamespace

    from advframe.evaluation import RunRow

    net, data = tiny
    runs = [_run("pgd", 0.1, 0.20), _run("pgd", 0.3, 0.50, plugin_score=1)]
    duck = SimpleNamespace(runs=runs, examples=200, clean_top1=0.9, clean_top5=1.0, checks=[],
                           meta={"seed": 0, "bounds": [0.0, 1.0]})
    (check,) = run_checks(net, data, duck, only=["monotone_in_eps"])
    assert check.status == "warn" and check == _status(tiny, runs, "monotone_in_eps")
    rows = _fake(runs).runs
    assert all(isinstance(r, RunRow) for r in rows) and rows[1].extra == {"plugin_score": 1}
