"""A real third-party plugin: build examples/plugin-template as a wheel, pip-install it into a
fresh virtualenv, use it through the CLI, uninstall it.

Everything runs offline: the wheel is built without build isolation and installed with
``--no-deps --no-index``; the virtualenv sees advframe and torch through a ``.pth`` file
that adds the running interpreter's site directories (``--system-site-packages`` alone
would reach only the base interpreter's, not those of a virtualenv the tests run in).
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "examples" / "plugin-template"
DIST = "advframe-example-plugin"


def run(*args: str | Path, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "400", "NO_COLOR": "1", "PYTHONPATH": ""}
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=ROOT)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{proc.args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def console_script(python: Path, bindir: Path) -> Path:
    """Write the ``advframe`` console script into the virtualenv from advframe's own entry point.

    A ``--system-site-packages`` virtualenv sees the advframe package but not the script
    that pip wrote next to the outer interpreter, so it is generated here the way pip
    does, from the ``console_scripts`` entry point the venv's Python finds.
    """
    probe = ok(run(python, "-c", textwrap.dedent("""
        import json
        from importlib.metadata import entry_points
        (ep,) = entry_points(group="console_scripts", name="advframe")
        print(json.dumps([ep.module, ep.attr]))
    """)))
    module, attr = json.loads(probe.stdout)
    script = bindir / "advframe"
    script.write_text(f"#!{python}\nimport sys\nfrom {module} import {attr}\nsys.exit({attr}())\n")
    script.chmod(0o755)
    return script


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX virtualenv layout")
def test_template_wheel_installs_lists_evaluates_and_uninstalls(tmp_path):
    source = tmp_path / "plugin-template"  # build a copy: setuptools writes build/ and egg-info in-tree
    shutil.copytree(TEMPLATE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    wheels = tmp_path / "wheels"
    ok(run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
           "-w", wheels, source))
    (wheel,) = wheels.glob("advframe_example_plugin-0.1.0-*.whl")

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False, symlinks=True).create(env_dir)
    python, bindir = env_dir / "bin" / "python", env_dir / "bin"
    (inner_site,) = (env_dir / "lib").glob("python*/site-packages")
    outer = [p for p in site.getsitepackages() if Path(p).is_dir()]
    # addsitedir also runs the .pth files there (an editable install of advframe is one)
    (inner_site / "outer_environment.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in outer))
    ok(run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel))
    shown = ok(run(sys.executable, "-m", "pip", "--python", python, "show", DIST))
    assert f"Name: {DIST}" in shown.stdout

    advframe = console_script(python, bindir)
    listed = ok(run(advframe, "list", "attacks")).stdout
    row = next(line for line in listed.splitlines() if "example_r_fgsm" in line)
    assert DIST in row and "example" in row

    infos = {p["name"]: p for p in json.loads(ok(run(python, "-m", "advframe", "plugins", "--json")).stdout)}
    assert infos["example"]["distribution"] == DIST
    assert infos["example"]["version"] == "0.1.0"
    assert infos["example"]["status"] == "ok" and infos["example"]["errors"] == []
    assert set(infos["example"]["hooks"]) == {"register_attacks", "register_datasets", "register_models"}

    out = tmp_path / "r.json"
    ok(run(advframe, "eval", "--model", "example_mlp", "--untrained", "--dataset", "example_stripes", "--attack",
           "example_r_fgsm", "--eps", "0.1", "--limit", "20", "--no-progress", "--device", "cpu",
           "--output", out))
    doc = json.loads(out.read_text())
    assert (doc["dataset"], doc["examples"]) == ("example_stripes", 20)
    (only,) = doc["runs"]
    assert (only["attack"], only["eps"], only["violations"]) == ("example_r_fgsm", 0.1, 0)
    assert only["gradient_evaluations"] == 1.0
    # its declared traits put it into the checks with no change to advframe: leaks_labels makes the
    # evaluator measure its predicted-label twin and the label_leaking check read its run
    assert only["label_leaks"] is not None
    checks = {c["name"]: c for c in doc["checks"]}
    assert "example_r_fgsm" in checks["label_leaking"]["evidence"]
    assert "example_r_fgsm" in checks["whitebox_beats_noise"]["evidence"]

    ok(run(sys.executable, "-m", "pip", "--python", python, "uninstall", "-y", "-q", DIST))
    after = ok(run(python, "-m", "advframe", "list", "attacks")).stdout
    assert "example_r_fgsm" not in after and "fgsm" in after
    gone = run(advframe, "eval", "--model", "example_mlp", "--dataset", "example_stripes", "--limit", "2")
    assert gone.returncode == 2 and "unknown" in gone.stderr and "Traceback" not in gone.stderr
