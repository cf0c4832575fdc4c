"""The code blocks of docs/quickstart.md and docs/own-model.md, run as written.

Every fenced block of these pages is listed in ``PLAN`` with what the test does with it,
so a new or changed block fails here until it is classified:

* ``python`` blocks are executed in order in one namespace, in a temporary folder
  (a ``prelude`` first defines the names a fragment takes from its surroundings);
* ``module`` blocks are written to the file their first comment names;
* ``bash`` blocks: each ``advframe ...`` command is run (``RUN``): through the real
  console script where the command is the point of the page (``SCRIPT``), else in this
  process through the function the script calls, ``advframe.cli.main`` (each process
  start costs seconds of imports); or, where it would take minutes here (a full-data
  evaluation or a five-epoch training), it is parsed by the CLI without running
  (``PARSE``): its command and options exist and its values are accepted;
* ``skip``: the reason is given (installing the project, running this very test suite).
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

import pytest

from advframe.cli import main
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)  # top-level fences only (not inside admonitions)

# page -> one (fence language, what to do, prelude or reason) per block, in order
PLAN: dict[str, list[tuple[str, str, str]]] = {
    "quickstart.md": [
        ("bash", "skip", "installs the project; CI's install step runs this same command"),
        ("bash", "skip", "installs the test extra and runs the whole suite: this test is part of that run"),
        ("bash", "bash", ""),
        ("python", "python", ""),
    ],
    "own-model.md": [
        ("python", "module", ""),
        ("python", "python", ""),
        ("bash", "bash", ""),
        ("python", "python", "import torch\nnet = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))\n"
                   "data = (torch.rand(16, 3, 8, 8), torch.randint(0, 10, (16,)))\n"),
        ("python", "python", "import numpy as np\nrng = np.random.default_rng(0)\n"
                   "images = rng.integers(0, 256, size=(40, 1, 28, 28), dtype=np.uint8)\n"
                   "labels = rng.integers(0, 10, size=40)\n"),
        ("bash", "bash", ""),
    ],
}

# Commands run through the console script, and why each other one is only parsed.
RUN = {
    "advframe list attacks",
    "advframe plugins",
    "advframe eval --model mynet.safetensors --arch mynets.cnn:Net --attack pgd --eps 0.1",
    "advframe eval --model mynet.safetensors --arch mynets.cnn:Net --dataset mine.npz --attack fgsm",
}
SCRIPT = {"advframe eval --model mynet.safetensors --arch mynets.cnn:Net --attack pgd --eps 0.1"}
PARSE = {
    "advframe eval --attack fgsm --attack pgd --eps 0.1 --eps 0.3 --output r.json": "PGD-40 on 1,000 digits",
    "advframe train --model mnist_cnn --dataset mnist5k --epochs 5 --out model.safetensors": "5 CNN epochs",
    "advframe eval --model model.safetensors --attack iter_ll": "needs the trained model above; 1,000 digits",
}


def blocks(page: str) -> list[tuple[str, str]]:
    return FENCE.findall((ROOT / "docs" / page).read_text(encoding="utf-8"))


def commands(body: str) -> list[str]:
    """The ``advframe`` command lines of a bash block, without comments."""
    lines = [line.split("  #")[0].strip() for line in body.splitlines()]
    return [line for line in lines if line.startswith("advframe ")]


def parse_only(command: str) -> None:
    """Let the CLI parse ``command`` (command, options, values) without running it."""
    import typer

    from advframe.cli.app import build_app

    args = shlex.split(command)[1:]
    group = typer.main.get_command(build_app())
    sub = group.get_command(None, args[0])
    assert sub is not None, f"{command}: no command '{args[0]}'"
    with sub.make_context(args[0], args[1:]):
        pass


@pytest.mark.parametrize("page", sorted(PLAN))
def test_every_block_is_planned(page):
    found = [lang for lang, _ in blocks(page)]
    planned = [lang for lang, _, _ in PLAN[page]]
    assert found == planned, f"{page}: the page's blocks are {found}, PLAN lists {planned}"
    for (_, kind, _), (_, body) in zip(PLAN[page], blocks(page)):
        if kind == "bash":
            for command in commands(body):
                assert command in RUN or command in PARSE, f"{page}: classify '{command}' in RUN or PARSE"


def run_page(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Run the page's blocks in order in ``tmp_path``; the commands that ran."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]), "COLUMNS": "200"}
    namespace: dict[str, object] = {"__name__": "__doc_snippet__"}
    ran = []
    for (_, kind, extra), (_, body) in zip(PLAN[page], blocks(page)):
        if kind == "module":
            target = tmp_path / body.splitlines()[0].lstrip("# ").split(" ")[0]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(body)
        elif kind == "python":
            exec(compile(extra + body, f"{page} block", "exec"), namespace)  # noqa: S102 - the docs' own code
        elif kind == "bash":
            for command in commands(body):
                if command in PARSE:
                    parse_only(command)
                    continue
                if command in SCRIPT:
                    proc = run_cli(*shlex.split(command)[1:], env=env)
                    assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
                else:
                    with pytest.raises(SystemExit) as exit_info:
                        main(shlex.split(command)[1:])
                    assert exit_info.value.code == 0, command
                ran.append(command)
    return ran


def test_quickstart(tmp_path, monkeypatch, capsys):
    ran = run_page("quickstart.md", tmp_path, monkeypatch)
    assert ran == ["advframe list attacks", "advframe plugins"]
    top1 = float(capsys.readouterr().out.strip().splitlines()[-1])  # the Python block prints a top-1 accuracy
    assert 0.0 <= top1 <= 1.0


def test_own_model(tmp_path, monkeypatch):
    ran = run_page("own-model.md", tmp_path, monkeypatch)
    assert len(ran) == 2 and (tmp_path / "mynet.safetensors").is_file() and (tmp_path / "mine.npz").is_file()
    for name in list(sys.modules):
        if name == "mynets" or name.startswith("mynets."):
            del sys.modules[name]
