"""No internal paper numbers ("paper 004") in help, tables, reports, code or docs: name the method."""

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from advframe.cli.app import build_app

ROOT = Path(__file__).resolve().parent.parent
PAPER_NUMBER = re.compile(r"paper[ _-]?0\d\d", re.IGNORECASE)


def commands() -> list[str]:
    import typer

    return sorted(typer.main.get_command(build_app()).commands)


@pytest.mark.parametrize("command", commands())
def test_help_names_methods_not_paper_numbers(command):
    res = CliRunner().invoke(build_app(), [command, "--help"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert not PAPER_NUMBER.search(res.output), res.output


def test_code_and_docs_name_methods_not_paper_numbers():
    hits = []
    for folder, pattern in (("advframe", "*.py"), ("plugins", "*.py"), ("docs", "*.md"), ("examples", "*")):
        for path in (ROOT / folder).rglob(pattern):
            if path.is_file() and path.suffix in (".py", ".md", ".toml"):
                for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                    if PAPER_NUMBER.search(line):
                        hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not hits, "\n".join(hits)
