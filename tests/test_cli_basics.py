"""CLI basics through the console script: --version, -h, bare advframe, the defaults help names; list KIND."""

from __future__ import annotations

import advframe
from tests.helpers import invoke, run_cli


def test_version():
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"advframe {advframe.__version__}"


def test_bare_advframe_prints_the_help_without_an_error_line():
    proc = run_cli()
    assert proc.returncode == 0, proc.stderr
    assert "Usage: advframe" in proc.stdout and "eval" in proc.stdout
    assert "error" not in proc.stderr


def test_short_help():
    proc = run_cli("-h")
    assert proc.returncode == 0 and "Usage: advframe" in proc.stdout


def test_eval_help_has_no_bool_noise_and_names_the_defaults_the_plugins_declare():
    from advframe import plugins

    reg = plugins.registry()
    attack = reg.default("attacks")
    proc = run_cli("eval", "-h", env={"COLUMNS": "250"})
    assert proc.returncode == 0 and "--no-progress" in proc.stdout and "--arch" in proc.stdout
    assert "<bool>" not in proc.stdout
    out = " ".join(proc.stdout.replace("│", " ").split())
    assert f"(default: {attack}, declared by plugin {reg.get('attacks', attack).plugin})" in out


def test_list_unknown_kind_is_one_plain_line():
    out = invoke(["list", "foo"])
    assert out.code == 2 and "Traceback" not in out.output
    assert out.output.strip() == ("error: unknown kind 'foo': use attacks, defenses, models, datasets, suites, checks "
                                  "or reports")
