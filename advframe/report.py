"""Reports from results documents: curves, accuracy ratios, transfer matrices, white/black-box tables.

Reads ``advframe.eval/1`` documents (``advframe eval --output``) and ``advframe.transfer/1``
documents (``advframe transfer --output``) and returns data, Markdown text or a PNG file;
nothing here prints. The layouts follow the papers:

* accuracy and accuracy ratio (adversarial / clean accuracy) against eps, the y-axis of
  Kurakin, Goodfellow & Bengio, *Adversarial Machine Learning at Scale* (ICLR 2017),
  Fig. 1 and §4.3;
* transfer-rate and error-rate matrices, rows sources and columns targets, top-1 and top-5,
  as in Kurakin et al. 2017, Tables 4 and 6;
* the white-box / black-box table of *A Direct Approach to Robust Deep Learning Using
  Adversarial Networks* (ICLR 2019 submission), Table 1: one row per model, columns clean
  ("No Noise"), white-box attacks, then each attack transferred from each source model
  ("FGS(A')").

matplotlib is optional (``pip install matplotlib``; the ``plot`` extra), imported only by
:func:`plot_curves`.
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advframe.checkpoint import atomic_write_bytes
from advframe.errors import AdvframeError, DataError
from advframe.threat import NORMS

EVAL_SCHEMA = "advframe.eval/1"
TRANSFER_SCHEMA = "advframe.transfer/1"


class MissingDependencyError(AdvframeError, ImportError):
    """An optional dependency (an extra) that is not installed."""


@dataclass
class Curve:
    """Top-1 accuracy and accuracy ratio of one model under one attack, over eps (clean at eps 0)."""

    model: str
    attack: str
    eps: list[float]
    accuracy: list[float | None]
    ratio: list[float | None]


def load_documents(paths: list[str | os.PathLike[str]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Read results documents; return ``(eval documents, transfer documents)``.

    Raises:
        DataError: a file that is missing, not JSON, or of another schema.
    """
    evals, transfers = [], []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise DataError(f"results file '{path}' does not exist: pass a file written by "
                            f"'advframe eval --output' or 'advframe transfer --output'")
        try:
            doc = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"'{path}' is not JSON ({exc.__class__.__name__}): pass a results document") from None
        except RecursionError:
            raise DataError(f"'{path}' is JSON nested too deeply to read: pass a results document") from None
        except OSError as exc:
            raise DataError(f"cannot read '{path}' ({exc.strerror}): pass a readable results document") from None
        schema = doc.get("schema") if isinstance(doc, dict) else None
        if schema == EVAL_SCHEMA:
            problem = eval_document_problem(doc)
            evals.append(doc)
        elif schema == TRANSFER_SCHEMA:
            problem = transfer_document_problem(doc)
            transfers.append(doc)
        else:
            raise DataError(f"'{path}' has schema {schema!r}: expected {EVAL_SCHEMA} or {TRANSFER_SCHEMA}")
        if problem is not None:
            raise DataError(f"'{path}' is not a valid {schema} document: {problem}; pass the file as "
                            f"'advframe {'eval' if schema == EVAL_SCHEMA else 'transfer'} --output' wrote it")
    return evals, transfers


# ---------------------------------------------------------------- document checks

_NUM = (int, float)


def _kind_problem(where: str, value: Any, kind: str) -> str | None:
    """None if ``value`` is of ``kind`` (str, int, num, fraction, bool, list, dict; '?' suffix: or null)."""
    if kind.endswith("?"):
        if value is None:
            return None
        kind = kind[:-1]
    number = isinstance(value, _NUM) and not isinstance(value, bool)
    ok = {"str": isinstance(value, str),
          "bool": isinstance(value, bool),
          "int": isinstance(value, int) and not isinstance(value, bool),
          "count": isinstance(value, int) and not isinstance(value, bool) and value >= 0,
          "num": number and math.isfinite(value),
          "size": number and math.isfinite(value) and value >= 0,
          "fraction": number and 0 <= value <= 1,
          "norm": value in NORMS,
          "list": isinstance(value, list),
          "dict": isinstance(value, dict),
          "objects": isinstance(value, list) and all(isinstance(v, dict) for v in value)}[kind]
    if ok:
        return None
    want = {"num": "a finite number", "int": "an integer", "count": "an integer >= 0",
            "size": "a finite number >= 0", "fraction": "a fraction in [0, 1]", "str": "a string",
            "norm": f"one of {', '.join(NORMS)}", "bool": "true or false", "list": "a list", "dict": "an object",
            "objects": "a list of objects"}[kind]
    return f"{where} is {json.dumps(value)[:40]}, expected {want}"


def _optional_problem(where: str, obj: dict[str, Any], fields: dict[str, str]) -> str | None:
    """Like :func:`_fields_problem` for keys that may be absent (older documents)."""
    for key, kind in fields.items():
        if key in obj:
            problem = _kind_problem(f"'{where}{key}'", obj[key], kind)
            if problem:
                return problem
    return None


def _fields_problem(where: str, obj: Any, fields: dict[str, str]) -> str | None:
    if not isinstance(obj, dict):
        return f"{where or 'the document'} is not an object"
    for key, kind in fields.items():
        name = f"{where}.{key}" if where else key
        if key not in obj:
            return f"'{name}' is missing"
        problem = _kind_problem(f"'{name}'", obj[key], kind)
        if problem:
            return problem
    return None


EVAL_FIELDS = {"model": "str", "dataset": "str", "split": "str", "examples": "count", "clean": "dict",
               "runs": "list"}
EVAL_OPTIONAL = {"checks": "objects", "violations": "objects", "worst_case": "objects"}
EVAL_RUN_FIELDS = {"attack": "str", "eps": "size", "norm": "norm", "targeted": "bool", "top1": "fraction?",
                   "top5": "fraction?", "success_rate": "fraction?", "accuracy_ratio": "size?",
                   "label_leaks": "count?", "max_perturbation": "size", "violations": "count",
                   "gradient_evaluations": "size?", "seconds": "size"}
EVAL_RUN_OPTIONAL = {"params": "dict", "examples": "count", "rejected_examples": "count",
                     "rejected_batches": "count", "failed": "bool"}
TRANSFER_FIELDS = {"dataset": "str", "split": "str", "examples": "count", "norm": "norm", "sources": "list",
                   "targets": "list", "clean": "dict", "runs": "list", "matrices": "list", "definitions": "dict"}


def eval_document_problem(doc: dict[str, Any]) -> str | None:
    """What is wrong with an ``advframe.eval/1`` document (the keys a report reads), or None."""
    problem = _fields_problem("", doc, EVAL_FIELDS) or _fields_problem("clean", doc["clean"],
                                                                        {"top1": "fraction", "top5": "fraction"})
    problem = problem or _optional_problem("", doc, EVAL_OPTIONAL)
    if problem:
        return problem
    for i, run in enumerate(doc["runs"]):
        problem = _fields_problem(f"runs[{i}]", run, EVAL_RUN_FIELDS) \
            or _optional_problem(f"runs[{i}].", run, EVAL_RUN_OPTIONAL)
        if problem:
            return problem
    return None


def transfer_document_problem(doc: dict[str, Any]) -> str | None:
    """What is wrong with an ``advframe.transfer/1`` document (the keys a report reads), or None."""
    problem = _fields_problem("", doc, TRANSFER_FIELDS) or _fields_problem(
        "definitions", doc["definitions"], {"transfer_rate": "str", "error_rate": "str"})
    if problem:
        return problem
    for name in doc["sources"] + doc["targets"]:
        if not isinstance(name, str):
            return f"'sources' and 'targets' hold {json.dumps(name)[:40]}, expected model names (strings)"
    for name in dict.fromkeys(doc["sources"] + doc["targets"]):
        if name not in doc["clean"]:
            return f"'clean.{name}' is missing (the clean accuracy of model '{name}')"
    for name, c in doc["clean"].items():
        problem = _fields_problem(f"clean.{name}", c, {"top1": "fraction?"})
        if problem:
            return problem
    rows, cols = len(doc["sources"]), len(doc["targets"])
    for i, m in enumerate(doc["matrices"]):
        where = f"matrices[{i}]"
        problem = _fields_problem(where, m, {"attack": "str", "eps": "size", "transfer_rate": "dict",
                                             "error_rate": "dict"})
        if problem:
            return problem
        for metric in ("transfer_rate", "error_rate"):
            for k in ("top1", "top5"):
                matrix = m[metric].get(k)
                if not (isinstance(matrix, list) and len(matrix) == rows
                        and all(isinstance(r, list) and len(r) == cols for r in matrix)):
                    return f"'{where}.{metric}.{k}' is not a {rows}x{cols} matrix (sources x targets)"
                for r in matrix:
                    for v in r:
                        problem = _kind_problem(f"a cell of '{where}.{metric}.{k}'", v, "fraction?")
                        if problem:
                            return problem
    for i, r in enumerate(doc["runs"]):
        problem = _fields_problem(f"runs[{i}]", r, {"source": "str", "target": "str", "attack": "str",
                                                    "eps": "size", "accuracy": "dict"}) \
            or _fields_problem(f"runs[{i}].accuracy", r.get("accuracy"), {"top1": "fraction?"})
        if problem:
            return problem
    return None


def curves(evals: list[dict[str, Any]]) -> list[Curve]:
    """One curve per (model, attack, targeted) of the eval documents, sorted by eps, starting at clean."""
    out = []
    for doc in evals:
        clean = doc["clean"]["top1"]
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in doc["runs"]:
            groups.setdefault(r["attack"] + (" (targeted)" if r.get("targeted") else ""), []).append(r)
        for attack, runs in groups.items():
            runs = sorted(runs, key=lambda r: r["eps"])
            eps = [0.0] + [r["eps"] for r in runs]
            acc = [clean] + [r["top1"] for r in runs]
            rat = [1.0 if clean else None] + [r.get("accuracy_ratio") for r in runs]
            if runs and runs[0]["eps"] == 0.0:
                eps, acc, rat = eps[1:], acc[1:], rat[1:]
            out.append(Curve(doc["model"], attack, eps, acc, rat))
    return out


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def transfer_matrices(doc: dict[str, Any], metric: str = "transfer_rate", k: str = "top1"
                      ) -> list[tuple[str, float, list[list[float | None]]]]:
    """``(attack, eps, rows sources x columns targets)`` for each matrix of a transfer document."""
    return [(m["attack"], m["eps"], m[metric][k]) for m in doc["matrices"]]


def transfer_markdown(doc: dict[str, Any]) -> str:
    """Kurakin Tables 4 (transfer rate) and 6 (error rate) for a transfer document, as Markdown."""
    parts = [f"## Transfer: {doc['dataset']}/{doc['split']}, {doc['examples']} examples, {doc['norm']}",
             "",
             "Rows: source model (the attack sees it); columns: target model. Transfer rate: "
             + doc["definitions"]["transfer_rate"] + ". Error rate: " + doc["definitions"]["error_rate"] + ".",
             ""]
    for metric, title in (("transfer_rate", "Transfer rate"), ("error_rate", "Error rate")):
        for k in ("top1", "top5"):
            for attack, eps, matrix in transfer_matrices(doc, metric, k):
                parts.append(f"### {title}, {k.replace('top', 'top-')}: {attack}, eps={eps:g}")
                parts.append("")
                rows = [[src] + [_pct(v) for v in row] for src, row in zip(doc["sources"], matrix)]
                parts.append(_md_table(["source \\ target"] + list(doc["targets"]), rows))
                parts.append("")
    return "\n".join(parts)


def check_eps(evals: list[dict[str, Any]], transfers: list[dict[str, Any]], eps: float | None) -> None:
    """Refuse an eps that no run of the documents holds (the table would be all dashes).

    Raises:
        DataError: naming the eps and those the documents hold.
    """
    if eps is None:
        return
    held = sorted({r["eps"] for d in evals + transfers for r in d["runs"]})
    if held and not any(abs(e - eps) < 1e-9 for e in held):
        raise DataError(f"eps {eps:g} is in none of the documents (they hold eps {', '.join(f'{e:g}' for e in held)}): "
                        f"pass one of those to --eps")


def _pick_eps(evals: list[dict[str, Any]], transfers: list[dict[str, Any]], eps: float | None) -> float | None:
    if eps is not None:
        check_eps(evals, transfers, eps)
        return eps
    grid = sorted({e for d in transfers for e in d.get("eps", [m["eps"] for m in d["matrices"]])})
    if not grid:
        grid = sorted({r["eps"] for d in evals for r in d["runs"]})
    return grid[-1] if grid else None


def white_black_table(evals: list[dict[str, Any]], transfers: list[dict[str, Any]], eps: float | None = None
                      ) -> tuple[list[str], list[list[str]], float | None]:
    """The white-box / black-box layout of paper 004, Table 1, at one eps.

    Rows are models; columns ``clean``, then each white-box attack, headed by its name as
    paper 004 heads "FGS" (top-1 accuracy from an
    eval document, else from the diagonal of a transfer document), then ``attack(source)``:
    the model's top-1 accuracy on the attack's examples made on another model, as paper 004
    heads "FGS(A')" (a transfer document). ``eps`` defaults to the largest eps of the transfer documents (else of the
    eval documents).

    Returns:
        ``(header, rows, eps)``; cells are percentages or ``—`` where not measured.
    """
    eps = _pick_eps(evals, transfers, eps)
    clean: dict[str, float] = {}
    white: dict[tuple[str, str], float | None] = {}
    black: dict[tuple[str, str, str], float | None] = {}
    white_cols: list[str] = []
    black_cols: list[tuple[str, str]] = []
    close = (lambda e: eps is not None and abs(e - eps) < 1e-9)
    for d in evals:
        clean.setdefault(d["model"], d["clean"]["top1"])
        for r in d["runs"]:
            if close(r["eps"]) and not r.get("targeted"):
                white[(d["model"], r["attack"])] = r["top1"]
                if r["attack"] not in white_cols:
                    white_cols.append(r["attack"])
    for d in transfers:
        for name, c in d["clean"].items():
            clean.setdefault(name, c["top1"])
        for r in d["runs"]:
            if not close(r["eps"]):
                continue
            acc = r["accuracy"]["top1"]
            if r["source"] == r["target"]:
                white.setdefault((r["target"], r["attack"]), acc)
                if r["attack"] not in white_cols:
                    white_cols.append(r["attack"])
            else:
                black[(r["target"], r["attack"], r["source"])] = acc
                if (r["attack"], r["source"]) not in black_cols:
                    black_cols.append((r["attack"], r["source"]))
    models = list(clean)
    header = ["model", "clean"] + list(white_cols) + [f"{a}({s})" for a, s in black_cols]
    rows = [[m, _pct(clean[m])] + [_pct(white.get((m, a))) for a in white_cols]
            + [_pct(black[(m, a, s)]) if (m, a, s) in black else "—" for a, s in black_cols] for m in models]
    return header, rows, eps


def markdown(evals: list[dict[str, Any]], transfers: list[dict[str, Any]], eps: float | None = None,
             plot: str | None = None) -> str:
    """A Markdown report: per-model accuracy tables, the paper-004 table and the transfer matrices."""
    parts = ["# advframe report", ""]
    if plot:
        parts += [f"![accuracy and accuracy ratio against eps]({plot})", ""]
    for d in evals:
        parts += [f"## {d['model']} on {d['dataset']}/{d['split']} ({d['examples']} examples)", "",
                  f"Clean top-1 {_pct(d['clean']['top1'])}, top-5 {_pct(d['clean']['top5'])}. Accuracy ratio = "
                  "adversarial / clean top-1 accuracy (Kurakin et al. 2017, §4.3).", ""]
        rows = [[r["attack"] + (" (targeted)" if r.get("targeted") else ""), f"{r['eps']:g}", _pct(r["top1"]),
                 _pct(r["top5"]), "—" if r.get("accuracy_ratio") is None else f"{r['accuracy_ratio']:.3f}",
                 str(r.get("violations", 0))] for r in d["runs"]]
        parts += [_md_table(["attack", "eps", "top-1", "top-5", "accuracy ratio", "violations"], rows), ""]
    header, rows, used = white_black_table(evals, transfers, eps)
    if rows and used is not None:
        parts += [f"## White-box and black-box top-1 accuracy, eps={used:g}", "",
                  "Layout of paper 004, Table 1: `attack` columns are white-box, `attack(S)` columns the accuracy "
                  "on the attack's examples made on source model S (black-box).", "", _md_table(header, rows), ""]
    for d in transfers:
        parts += [transfer_markdown(d), ""]
    return "\n".join(parts).rstrip() + "\n"


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("plotting needs matplotlib, which is not installed: "
                                     "pip install matplotlib (or drop --plot)") from None
    return plt


def plot_curves(evals: list[dict[str, Any]], path: str | os.PathLike[str], title: str | None = None) -> Path:
    """Write a PNG with two panels: top-1 accuracy vs eps and accuracy ratio vs eps (Kurakin Fig. 1).

    One line per (model, attack); colour by attack, line style by model.

    Raises:
        MissingDependencyError: matplotlib is not installed.
        DataError: no eval document to plot.
    """
    found = curves(evals)
    if not found:
        raise DataError("nothing to plot: --plot needs at least one eval results document with runs "
                        "(written by 'advframe eval --output')")
    plt = _pyplot()
    attacks = list(dict.fromkeys(c.attack for c in found))
    models = list(dict.fromkeys(c.model for c in found))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "D", "v", "x"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for c in found:
        ai, mi = attacks.index(c.attack), models.index(c.model)
        kw = {"color": colours[ai % len(colours)], "linestyle": styles[mi % len(styles)],
              "marker": markers[mi % len(markers)], "markersize": 4, "label": f"{c.model} · {c.attack}"}
        axes[0].plot(c.eps, [float("nan") if v is None else v for v in c.accuracy], **kw)
        axes[1].plot(c.eps, [float("nan") if v is None else v for v in c.ratio], **kw)
    axes[0].set_ylabel("top-1 accuracy")
    axes[1].set_ylabel("accuracy ratio (adversarial / clean)")
    axes[1].axhline(1.0, color="grey", linewidth=0.8)
    for ax in axes:
        ax.set_xlabel("eps")
        ax.set_ylim(-0.02, 1.05 if ax is axes[0] else max(1.05, ax.get_ylim()[1]))
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="best")
    fig.suptitle(title or "top-1 accuracy and accuracy ratio (Kurakin et al. 2017, §4.3, Fig. 1) against eps", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    out = Path(path)
    atomic_write_bytes(out, buf.getvalue())
    return out
