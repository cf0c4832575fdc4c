"""Plugin discovery through entry points: isolation of broken plugins, strict mode, registry."""

import subprocess
import sys
import types

import pytest

import advframe
from advframe import plugins
from advframe.errors import PluginError, UnknownNameError
from tests.helpers import run_cli

GOOD = """
import advframe
from advframe.attack import Attack

class Nudge(Attack):
    '''Moves every pixel up by eps (a toy attack for plugin tests).'''
    name = "fakeplug_nudge"
    norms = ("linf",)
    uses_true_label = False
    def perturb(self, model, x, y, threat, target):
        return threat.project(x + threat.eps, x)

@advframe.hookimpl
def register_attacks(register):
    register(Nudge)
"""

RAISES_ON_IMPORT = """
raise RuntimeError("this plugin is broken on purpose")
"""

HOOK_RAISES = """
import advframe

@advframe.hookimpl
def register_attacks(register):
    raise ValueError("hook failed on purpose")
"""


def test_good_plugin_registers_with_its_distribution(fake_plugins):
    fake_plugins("fake-good", "fakeplug_good", GOOD)
    entry = plugins.registry().get("attacks", "fakeplug_nudge")
    assert entry.distribution == "fake-good" and entry.version == "0.1.0"
    assert entry.summary.startswith("Moves every pixel")
    assert type(advframe.get_attack("fakeplug_nudge")).__name__ == "Nudge"


def test_plugin_that_raises_on_import_is_isolated(fake_plugins):
    fake_plugins("fake-good", "fakeplug_good", GOOD)
    fake_plugins("fake-broken", "fakeplug_broken", RAISES_ON_IMPORT)
    host = plugins.host()
    assert host.plugins["fakeplug_broken"].status == "error"
    assert "broken on purpose" in host.plugins["fakeplug_broken"].errors[0]
    assert "fakeplug_nudge" in host.registry.names("attacks")  # the rest keeps working


def test_hook_that_raises_is_isolated(fake_plugins):
    fake_plugins("fake-hook", "fakeplug_hook", HOOK_RAISES)
    info = plugins.host().plugins["fakeplug_hook"]
    assert info.status == "error" and "register_attacks" in info.errors[0]


def test_strict_mode_turns_failures_into_errors(fake_plugins, monkeypatch):
    fake_plugins("fake-broken", "fakeplug_broken", RAISES_ON_IMPORT)
    monkeypatch.setenv("ADVFRAME_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="fakeplug_broken"):
        plugins.host()


def test_broken_plugin_through_the_console_script(fake_plugins):
    fake_plugins("fake-broken", "fakeplug_broken", RAISES_ON_IMPORT)
    listed = run_cli("list", "attacks")
    assert listed.returncode == 0, listed.stderr
    assert "iter_ll" in listed.stdout
    assert listed.stderr.count("broken on purpose") == 1   # reported on stderr once
    shown = run_cli("plugins", "--json")
    assert shown.returncode == 0
    assert "fakeplug_broken" in shown.stdout and "broken on purpose" in shown.stdout
    strict = run_cli("list", env={"ADVFRAME_STRICT_PLUGINS": "1"})
    assert strict.returncode == 2 and "Traceback" not in strict.stderr
    assert "fakeplug_broken" in strict.stderr


def test_unknown_names_suggest_the_closest():
    with pytest.raises(UnknownNameError, match="did you mean 'iter_ll'"):
        advframe.get_attack("iter_lll")


def test_duplicate_names_are_refused_and_reported_on_the_late_plugin():
    from advframe.registry import Registry

    reg, errors = Registry(), {"a": [], "b": []}

    class A(advframe.Attack):
        name = "same"

    class B(advframe.Attack):
        name = "other"

    assert reg.registrar("attacks", "a", "dist-a", "1", errors["a"].append)(A) is A
    late = reg.registrar("attacks", "b", "dist-b", "1", errors["b"].append)
    assert late(A) is None and late(B) is B  # the conflict is refused, the rest still registers
    assert errors["a"] == [] and len(errors["b"]) == 1
    assert "'same'" in errors["b"][0] and "already taken by plugin 'a'" in errors["b"][0]
    assert reg.get("attacks", "same").plugin == "a" and reg.get("attacks", "other").plugin == "b"


@pytest.mark.parametrize("attrs, why", [
    ({"name": "Bad Name"}, "not snake_case"),
    ({"norms": ("l1",)}, "'norms'"),
    ({"targetable": "yes"}, "trait 'targetable'"),
    ({"one_step_counterpart": 3}, "trait 'one_step_counterpart'"),
    ({"defaults": ["steps"]}, "'defaults'"),
])
def test_typed_registrar_checks_attack_traits(attrs, why):
    from advframe.registry import Registry

    cls = type("Broken", (advframe.Attack,), {"name": "broken", **attrs})
    errors: list[str] = []
    assert Registry().registrar("attacks", "p", "d", "1", errors.append)(cls) is None
    assert len(errors) == 1 and why in errors[0]


def test_registrar_refuses_an_attack_without_the_grid_entry_point():
    from advframe.registry import Registry

    traits = {t: getattr(advframe.Attack, t) for t in ("targetable", "uses_true_label", "leaks_labels",
                                                        "noise_baseline", "unbounded_probe", "black_box",
                                                        "one_step_counterpart", "label_free_twin")}
    not_an_attack = type("NotAnAttack", (), {"name": "plain", "norms": ("linf",), **traits})
    errors: list[str] = []
    Registry().registrar("attacks", "p", "d", "1", errors.append)(not_an_attack)
    assert len(errors) == 1 and "no grid() method" in errors[0]


def test_misspelt_hook_is_the_plugins_error(monkeypatch):
    from advframe.plugins import PluginHost

    monkeypatch.delenv("ADVFRAME_STRICT_PLUGINS", raising=False)
    module = types.ModuleType("misspelt")

    @advframe.hookimpl
    def register_attack(register):  # missing "s": no such hook
        raise AssertionError("never called")

    module.register_attack = register_attack
    host = PluginHost()
    info = host.add(module, "misspelt")
    assert info.status == "error"
    assert "unknown hook 'register_attack' (did you mean 'register_attacks'?)" in info.errors[0]


def test_missing_required_plugin_is_one_line_and_drops_its_components(monkeypatch):
    from advframe.plugins import PluginHost

    monkeypatch.delenv("ADVFRAME_STRICT_PLUGINS", raising=False)
    module = types.ModuleType("needy")
    module.requires = ("not_installed",)

    class Needy(advframe.Defense):
        name = "needy"

    @advframe.hookimpl
    def register_defenses(register):
        register(Needy)

    module.register_defenses = register_defenses
    host = PluginHost()
    host.add(module, "needy")
    assert host.registry.get("defenses", "needy")
    host.check_requirements()
    assert "needy" not in host.registry.names("defenses")
    assert host.plugins["needy"].status == "error"
    assert "needs plugin 'not_installed'" in host.plugins["needy"].errors[-1]


def test_import_advframe_imports_neither_typer_nor_rich():
    code = "import sys, advframe; advframe.plugins.registry(); print('typer' in sys.modules, 'rich' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
