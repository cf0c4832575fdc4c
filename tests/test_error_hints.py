"""Errors that fit their caller: a fix names an option through a Hint, which the CLI shows as a
flag (``--limit 100``) and Python as a keyword (``limit=100``)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import advframe
from advframe.errors import AdvframeError, DataError, Hint, ParameterError
from tests.helpers import invoke

ROOT = Path(__file__).resolve().parents[1]


def test_a_hint_is_a_flag_on_the_cli_and_a_keyword_in_python():
    cases = [(Hint("limit", 100), "--limit 100", "limit=100"),
             (Hint("resume", True), "--resume", "resume=True"),
             (Hint("stop_on_collapse", False), "--no-stop-on-collapse", "stop_on_collapse=False"),
             (Hint("model_param"), "--model-param", "model_param"),
             (Hint("config", "width=2", flag="--model-param"), "--model-param width=2", "config=width=2")]
    for hint, cli, python in cases:
        assert (hint.cli(), hint.python()) == (cli, python)
    err = DataError("{limit} is too many", hint=Hint("limit", 100))
    assert (str(err), err.render(cli=True)) == ("limit=100 is too many", "--limit 100 is too many")
    # a hint without a mark is added at the end; marks of one option are filled in order
    assert AdvframeError("too slow", hint=Hint("limit", 100)).render(cli=True) == "too slow: use --limit 100"
    two = ParameterError("{keep} or {keep}", hint=(Hint("keep", "best"), Hint("keep", "last")))
    assert (str(two), two.render(cli=True)) == ("keep=best or keep=last", "--keep best or --keep last")


def test_the_same_error_reads_as_flags_on_the_cli_and_as_keywords_in_python(tmp_path):
    with pytest.raises(ParameterError) as caught:
        advframe.train("mnist_cnn", "mnist5k", amp=True, device="cpu", epochs=1, max_steps=0)
    python = str(caught.value)
    assert python.endswith(": drop amp=True or use device=cuda") and "--" not in python
    out = invoke(["train", "--amp", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "m.safetensors")])
    assert out.code == 2 and len(out.lines) == 1, out.output
    assert out.lines[0] == "error: " + python.replace("amp=True", "--amp").replace("device=cuda", "--device cuda")


def test_the_arch_hint_carries_its_value():
    from advframe.model_io import import_arch

    with pytest.raises(ParameterError) as caught:
        import_arch("nosuchmod_xyz:Net")
    python = str(caught.value)
    assert python.startswith("arch=nosuchmod_xyz:Net: cannot import module 'nosuchmod_xyz'")
    out = invoke(["eval", "--arch", "nosuchmod_xyz:Net", "--untrained", "--no-progress", "--no-checks"])
    assert out.code == 2 and out.lines == ["error: " + python.replace("arch=nosuchmod_xyz:Net", "--arch nosuchmod_xyz:Net")]


FLAG = re.compile(r"(?<![\w-])--[a-z]")


@pytest.mark.parametrize("module", ["advframe/model_io.py", "advframe/training.py", "advframe/data_source.py",
                                    "advframe/api.py"])
def test_library_errors_name_no_cli_flag(module):
    """The messages these modules raise name options through hints, never as ``--flag`` text."""
    tree = ast.parse((ROOT / module).read_text(encoding="utf-8"))
    flagged = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Raise) and node.exc is not None
               and any(isinstance(n, ast.Constant) and isinstance(n.value, str) and FLAG.search(n.value)
                       for n in ast.walk(node.exc))]
    assert not flagged, f"{module}: error messages naming a CLI flag at lines {flagged}: use errors.Hint"
