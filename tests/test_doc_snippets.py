"""The code blocks of the docs pages, run as written.

Every fenced block of every page under docs/ is listed in ``PLAN`` with what the test
does with it, so a new page, or a new or changed block, fails here until it is classified:

* ``python`` blocks are executed in order in one namespace, in a temporary folder
  (a ``prelude`` first defines the names a fragment takes from its surroundings);
* ``module`` blocks are written to the file their first comment names;
* ``bash`` blocks: each ``advframe ...`` command is run (``RUN``): through the real
  console script where the command is the point of the page (``SCRIPT``), else in this
  process through the function the script calls, ``advframe.cli.main`` (each process
  start costs seconds of imports); every other one would take minutes here (a full-data
  evaluation, a training of epochs, or files such a run writes), so it is parsed by the
  CLI without running: its command and options exist and its values are accepted;
* ``excerpt``: the block quotes a file of the plugin template (named in the plan); each of
  its code lines must be a line of that file (``...`` marks an elision), and
  tests/test_template.py and tests/test_plugin_install.py run the file itself;
* ``json``: an example results document, which ``advframe report`` must accept;
* ``compile``: compiled, not run, where running takes minutes here (the reason is given);
* ``skip``: the reason is given (installing the project, running this very test suite).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from pathlib import Path

import pytest

from advframe.cli import main
from tests.helpers import run_cli

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
    "checks.md": [
        ("bash", "bash", ""),
        ("python", "python", "import advframe\nother_model = advframe.load_model('mnist_cnn_mixed_step_ll')\n"),
    ],
    "capacity.md": [
        ("bash", "bash", ""),
        ("bash", "bash", ""),
        ("python", "compile", "trains six CNNs for eight epochs each (an hour here)"),
    ],
    "codeword.md": [
        ("bash", "bash", ""),
        ("python", "python", ""),
        ("bash", "bash", ""),
        ("bash", "bash", ""),
    ],
    "transfer.md": [
        ("bash", "bash", ""),
        ("python", "python", "import advframe\nfor _name, _shipped in (('a', 'mnist_cnn_standard'), "
                   "('b', 'mnist_cnn_mixed_step_ll')):\n"
                   "    advframe.save_model(advframe.load_model(_shipped), f'{_name}.safetensors')\n"),
        ("bash", "bash", ""),
    ],
    "concepts.md": [
        ("python", "python", "import advframe\nmodel = advframe.load_model('mnist_cnn_standard')\n"
                   "_data = advframe.load_dataset('mnist5k', 'test')\nx, y = _data.x[:16], _data.y[:16]\n"
                   "attack = advframe.get_attack('fgsm')\nthreat = advframe.ThreatModel(norm='linf', eps=0.1)\n"),
    ],
    "plugins.md": [
        ("toml", "excerpt", "examples/plugin-template/pyproject.toml"),
        ("python", "excerpt", "examples/plugin-template/advframe_example/plugin.py"),
        ("python", "excerpt", "examples/plugin-template/advframe_example/attack.py"),
        ("python", "python", "import advframe\n"),
        ("python", "excerpt", "examples/plugin-template/tests/test_example_plugin.py"),
        ("bash", "bash", ""),
    ],
}

# one bash block on each attack's and each defense's page
PLAN.update({f"{kind}/{page.name}": [("bash", "bash", "")] for kind in ("attacks", "defenses")
             for page in sorted((ROOT / "docs" / kind).glob("*.md")) if page.name != "index.md"})
PLAN.update({
    "results.md": [("json", "json", "")],
    "defenses-measured.md": [("bash", "bash", "")] * 9,
    "zoo.md": [("bash", "bash", ""), ("bash", "bash", "")],
    "data.md": [("bash", "skip", "a checksum of the shipped file; tests/test_datasets.py checks the file itself")],
    "cli.md": [("bash", "bash", ""), ("bash", "bash", ""), ("bash", "bash", "")],
    "advnet.md": [("bash", "bash", "")],
    "worst-case.md": [("bash", "bash", ""), ("bash", "bash", ""),
                      ("bash", "skip", "a benchmark: minutes, beside torchattacks")],
    "cifar-imagenet.md": [("bash", "bash", "")] * 4,
    "multi-gpu.md": [("bash", "bash", ""), ("bash", "skip", "the GPU check script (needs a GPU machine)"),
                     ("bash", "skip", "downloads a wheel")],
})
COMMANDS = {"eval", "list", "plugins", "train", "transfer", "report", "lipschitz", "train-generator", "import"}

# Commands that are run: through the console script (SCRIPT) or in this process. Every other
# ``advframe`` command of a page trains for epochs, evaluates 1,000 digits or more, or needs
# files such a run writes (minutes here): it is parsed by the CLI without running.
RUN = {
    "advframe list attacks",
    "advframe plugins",
    "advframe eval --model mynet.safetensors --arch mynets.cnn:Net --attack pgd --eps 0.1",
    "advframe eval --model mynet.safetensors --arch mynets.cnn:Net --dataset mine.npz --attack fgsm",
}
SCRIPT = {"advframe eval --model mynet.safetensors --arch mynets.cnn:Net --attack pgd --eps 0.1"}
# the CIFAR-10 commands of cifar-imagenet.md, on the stand-in files SETUP writes (seconds on 8 images);
# its WRN-28-10 and Inception v3 commands take minutes here: tests/run_docs_commands.py runs them
RUN |= {
    "advframe eval --dataset cifar10 --data-dir data --model preact_resnet18 --untrained --attack pgd --param steps=10 "
    "--eps 8/255 --limit 4",
    "advframe import Wong2020Fast.pt --arch preact_resnet18 --eps 8/255 --out wong2020fast.safetensors",
    "advframe eval --model wong2020fast.safetensors --data-dir data --attack pgd --param steps=10 --eps 8/255 --limit 4",
}


def _stand_ins(folder: Path) -> None:
    from tests.formats import write_stand_ins

    write_stand_ins(folder)


# pages whose commands read files the user brings (data sets, foreign weights): written small first
SETUP = {"cifar-imagenet.md": _stand_ins}


def blocks(page: str) -> list[tuple[str, str]]:
    """The page's code blocks; ``text`` fences show output or usage lines, not code, and are left out."""
    return [b for b in FENCE.findall((ROOT / "docs" / page).read_text(encoding="utf-8")) if b[0] != "text"]


def commands(body: str) -> list[str]:
    """The ``advframe`` command lines of a bash block: continued lines joined, without comments,
    leading environment assignments or ``[optional]`` parts; elided ones (``...``) are left out."""
    lines = [without_comment(line) for line in body.replace("\\\n", " ").splitlines()]
    lines = [re.sub(r"\[[^\]]*\]", "", re.sub(r"^(\w+=\S*\s+)+", "", line)) for line in lines]
    return [" ".join(line.split()) for line in lines if line.startswith("advframe ") and "..." not in line]


def without_comment(line: str) -> str:
    """``line`` without a trailing ``# comment`` (one preceded by whitespace)."""
    return re.split(r"\s#", line, maxsplit=1)[0].strip()


def signature(line: str) -> str:
    """A ``def`` line reduced to its name and parameter names (the docs drop type annotations)."""
    head, _, rest = line.partition("(")
    inside = re.sub(r"\[[^\]]*\]", "", rest.rpartition(")")[0])
    names = [p.split(":")[0].split("=")[0].strip() for p in inside.split(",") if p.strip()]
    return f"{head}({', '.join(names)})"


def code_lines(text: str) -> list[str]:
    """Stripped lines without comments, blank lines or elisions (``...``); ``def`` lines as signatures."""
    lines = [without_comment(line) for line in text.splitlines()]
    lines = [signature(line) if line.startswith("def ") else line for line in lines]
    return [line for line in lines if line and not line.startswith("#") and "..." not in line]


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
                assert command.split()[1] in COMMANDS, f"{page}: '{command}' names no advframe command"


# pages whose Python evaluates whole splits (a minute here): run as written, on a class-balanced
# prefix of each data set the page loads
PREFIX = {"checks.md": 100, "transfer.md": 100}


def run_page(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Run the page's blocks in order in ``tmp_path``; the commands that ran."""
    if page in PREFIX:
        import advframe

        load = advframe.load_dataset
        monkeypatch.setattr(advframe, "load_dataset", lambda *a, **k: load(*a, **k).take(PREFIX[page]))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    if page in SETUP:
        SETUP[page](tmp_path)
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
        elif kind == "json":  # an example results document: what advframe report accepts
            from advframe.report import eval_document_problem

            assert eval_document_problem(json.loads(body)) is None, f"{page}: {eval_document_problem(json.loads(body))}"
        elif kind == "compile":
            compile(body, f"{page} block", "exec")
        elif kind == "excerpt":
            source = set(code_lines((ROOT / extra).read_text(encoding="utf-8")))
            missing = [line for line in code_lines(body) if line not in source]
            assert not missing, f"{page}: lines quoted from {extra} that it does not hold: {missing}"
        elif kind == "bash":
            for command in commands(body):
                if command not in RUN:
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


def test_every_page_is_planned():
    pages = sorted(str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md") if blocks(
        str(p.relative_to(ROOT / "docs"))))
    missing = [p for p in pages if p not in PLAN]
    assert not missing, f"pages with code blocks that PLAN does not list: {missing}"


@pytest.mark.parametrize("page", sorted(set(PLAN) - {"quickstart.md", "own-model.md"}))
def test_page(page, tmp_path, monkeypatch):
    run_page(page, tmp_path, monkeypatch)


def test_no_two_pages_are_published_at_one_address():
    # mkdocs writes docs/X.md and docs/X/index.md both to X/index.html: one page silently lost
    clashes = [str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md")
               if p.name != "index.md" and (p.with_suffix("") / "index.md").is_file()]
    assert not clashes, f"pages published at the address of a folder's index.md: {clashes}"
