"""What the tests share besides fixtures: the console script, in-process CLI runs, fake plugin
distributions, shorter attack settings. Imported as ``from tests.helpers import ...``; the
fixtures are in conftest.py (which pytest loads on its own, and no test imports)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest


#: Shorter runs of the slow attacks, for tests that check a contract (conformance, audit),
#: not an attack's strength.
FAST_ATTACK_PARAMS: dict[str, dict[str, int]] = {
    "apgd_ce": {"steps": 8},
    "apgd_dlr": {"steps": 8},
    "apgd_t": {"steps": 5, "n_target_classes": 3},
    "square": {"queries": 60},
    "fab_t": {"steps": 8, "n_target_classes": 3},
    "cw_l2": {"binary_search_steps": 2, "max_iterations": 20},
    "lbfgs": {"binary_search_steps": 2, "max_iterations": 20},
}


def make_distribution(root: Path, dist: str, module: str, source: str, entry: str | None = None,
                      version: str = "0.1.0") -> Path:
    """Write an installed-looking distribution (module + dist-info with an advframe entry point)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[advframe]\n{entry or module} = {module}\n")
    return root


def console_script() -> str:
    """The installed ``advframe`` console script next to this interpreter."""
    script = Path(sys.executable).parent / "advframe"
    if not script.exists():
        pytest.fail(f"console script {script} is missing: install the project (pip install .)")
    return str(script)


def run_process(argv: list[str], env: dict[str, str] | None = None, timeout: float = 300
                ) -> subprocess.CompletedProcess:
    """Run a command in its own process group; on timeout kill the whole group, so that
    workers it started (torchrun, --devices N) are not left behind."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})}, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real console script."""
    return run_process([console_script(), *args], env=env, timeout=timeout)


@dataclass
class Outcome:
    """What ``advframe ARGS`` did: exit code, and stdout and stderr together, as a user sees them."""

    code: int
    output: str

    @property
    def lines(self) -> list[str]:
        return [ln for ln in self.output.splitlines() if ln.strip()]


def invoke(args: list[str]) -> Outcome:
    """Run ``advframe ARGS`` in-process (Typer's CliRunner isolation) through :func:`advframe.cli.main`,
    the console script's own entry point and error handling, without a process start (seconds each)."""
    from typer.testing import CliRunner

    from advframe.cli import main

    runner = CliRunner()
    with runner.isolation() as (_out, _err, both):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - a traceback is what the tests must catch
            sys.stderr.write(traceback.format_exc())
            code = -1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        text = both.getvalue().decode("utf-8", "replace")
    return Outcome(code, text)


def linear_training_problem(n: int = 32, d: int = 10, k: int = 4, seed: int = 0):
    """``(model, x, y, data)``: a seeded linear classifier on ``n`` random inputs in [0, 1]^d
    with random labels of ``k`` classes, ``data`` their LabeledData train split."""
    import torch
    from torch import nn

    from advframe.dataset import LabeledData
    from advframe.model import as_model

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = as_model(nn.Linear(d, k))
    x = torch.rand(n, d, generator=g)
    y = torch.randint(0, k, (n,), generator=g)
    return model, x, y, LabeledData(x, y, num_classes=k, name="toy", split="train")
