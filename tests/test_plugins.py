"""Plugin discovery through entry points: isolation of broken plugins, strict mode, registry."""

import subprocess
import sys

import pytest

import advframe
from advframe import plugins
from advframe.errors import PluginError, UnknownNameError
from tests.conftest import run_cli

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


def test_duplicate_names_are_refused():
    from advframe.registry import Registry

    reg = Registry()
    register = reg.registrar("attacks", "a", "dist-a", "1")

    class A:
        name = "same"

    register(A)
    with pytest.raises(advframe.AdvframeError, match="already registered"):
        reg.registrar("attacks", "b", "dist-b", "1")(A)


def test_import_advframe_imports_neither_typer_nor_rich():
    code = "import sys, advframe; advframe.plugins.registry(); print('typer' in sys.modules, 'rich' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
