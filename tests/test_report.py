"""advframe report: reading results documents, PNG and Markdown output, the missing-matplotlib error."""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Any

import pytest

from advframe.errors import AdvframeError, DataError
from advframe.report import MissingDependencyError, curves, load_documents, markdown, plot_curves
from advframe_transfer.report import white_black_table


def run(attack: str, eps: float, top1: float, clean: float) -> dict[str, Any]:
    return {"attack": attack, "eps": eps, "norm": "linf", "targeted": False, "params": {}, "top1": top1,
            "top5": min(1.0, top1 + 0.1), "success_rate": 1 - top1 / clean, "accuracy_ratio": top1 / clean,
            "label_leaks": None, "max_perturbation": eps, "violations": 0, "gradient_evaluations": 1.0,
            "seconds": 0.1}


def eval_doc(model: str, clean: float, drop: float) -> dict[str, Any]:
    runs = [run(a, e, max(0.0, clean - drop * e * (2 if a == "iter_ll" else 1)), clean)
            for a in ("fgsm", "iter_ll") for e in (0.1, 0.2, 0.3)]
    return {"schema": "advframe.eval/1", "model": model, "dataset": "mnist5k", "split": "test", "examples": 100,
            "clean": {"top1": clean, "top5": 1.0}, "runs": runs, "checks": []}


def transfer_doc() -> dict[str, Any]:
    def cell(s: str, t: str, acc: float) -> dict[str, Any]:
        return {"source": s, "target": t, "attack": "fgsm", "eps": 0.3, "norm": "linf", "params": {},
                "white_box": s == t, "examples": 100, "transfer_rate": {"top1": 1.0 if s == t else 0.5, "top5": None},
                "error_rate": {"top1": 1 - acc, "top5": 0.0}, "accuracy": {"top1": acc, "top5": 1.0}}

    runs = [cell("A", "A", 0.1), cell("A", "B", 0.6), cell("B", "A", 0.7), cell("B", "B", 0.2)]
    return {"schema": "advframe.transfer/1", "dataset": "mnist5k", "split": "test", "examples": 100, "norm": "linf",
            "sources": ["A", "B"], "targets": ["A", "B"], "eps": [0.3],
            "clean": {"A": {"top1": 0.99, "top5": 1.0}, "B": {"top1": 0.98, "top5": 1.0}}, "runs": runs,
            "matrices": [{"attack": "fgsm", "eps": 0.3,
                          "transfer_rate": {"top1": [[1.0, 0.5], [0.5, 1.0]], "top5": [[None, None], [None, None]]},
                          "error_rate": {"top1": [[0.9, 0.4], [0.3, 0.8]], "top5": [[0.0, 0.0], [0.0, 0.0]]}}],
            "definitions": {"transfer_rate": "TR", "error_rate": "ER"}, "violations": []}


@pytest.fixture
def docs(tmp_path: Path) -> list[Path]:
    paths = [tmp_path / "a.json", tmp_path / "b.json", tmp_path / "t.json"]
    for p, d in zip(paths, [eval_doc("A", 0.99, 2.0), eval_doc("B", 0.98, 1.0), transfer_doc()]):
        p.write_text(json.dumps(d))
    return paths


def test_curves_and_white_black_table(docs: list[Path]) -> None:
    evals, transfers = load_documents(docs)
    assert len(evals) == 2 and len(transfers) == 1
    c = next(c for c in curves(evals) if c.model == "A" and c.attack == "fgsm")
    assert c.eps == [0.0, 0.1, 0.2, 0.3] and c.ratio[0] == 1.0
    assert c.accuracy[-1] == pytest.approx(0.39) and c.ratio[-1] == pytest.approx(0.39 / 0.99)
    header, rows, eps = white_black_table(evals, transfers)
    assert eps == 0.3
    assert header == ["model", "clean", "fgsm", "iter_ll", "fgsm(A)", "fgsm(B)"]
    a_row = next(r for r in rows if r[0] == "A")
    # white-box from the eval document wins over the transfer diagonal; black-box from B's examples
    assert a_row == ["A", "99.0%", "39.0%", "0.0%", "—", "70.0%"]


def test_cli_report_writes_png_and_markdown(docs: list[Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from advframe.cli.app import build_app

    png, md = tmp_path / "curves.png", tmp_path / "report.md"
    result = CliRunner().invoke(build_app(), ["report", *map(str, docs), "--plot", str(png), "--markdown", str(md)])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    text = md.read_text()
    assert "![accuracy and accuracy ratio against eps](curves.png)" in text
    assert "| A | 99.0% | 39.0% | 0.0% | — | 70.0% |" in text
    assert "### Transfer rate, top-1: fgsm, eps=0.3" in text
    assert "white-box" in result.output and "fgsm(B)" in text


def test_missing_matplotlib_is_one_clear_line(docs: list[Path], tmp_path: Path, monkeypatch: Any) -> None:
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    evals, _ = load_documents(docs)
    with pytest.raises(MissingDependencyError) as info:
        plot_curves(evals, tmp_path / "x.png")
    assert isinstance(info.value, AdvframeError)
    assert "pip install matplotlib" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "x.png").exists()

    from advframe.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(docs[0]), "--plot", str(tmp_path / "y.png")])
    assert exit_info.value.code == 2


def test_bad_documents(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError):
        load_documents([bad])
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": "something/1"}))
    with pytest.raises(DataError, match="schema"):
        load_documents([other])
    with pytest.raises(DataError):
        load_documents([tmp_path / "missing.json"])
    with pytest.raises(DataError):
        plot_curves([], tmp_path / "z.png")
    assert "Transfer rate" in markdown([], [transfer_doc()])
