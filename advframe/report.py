"""Reports from results documents: accuracy tables and curves, plus the layouts plugins register.

Reads ``advframe.eval/1`` documents (``advframe eval --output``) and returns data,
Markdown text or a PNG file; nothing here prints. Its own layout is accuracy and accuracy
ratio (adversarial / clean accuracy) against eps, the y-axis of Kurakin, Goodfellow &
Bengio, *Adversarial Machine Learning at Scale* (ICLR 2017), Fig. 1 and §4.3.

Other document schemas are read by the *report layouts* plugins register
(``register_reports``): a layout declares the ``schema`` it reads and returns a
problem string for a malformed document (``problem``), tables (``tables``) and
Markdown (``markdown``), given the eval documents too (the transfer plugin's white-box /
black-box table combines both).

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


#: A table of a report: ``(title, header, rows)``, every cell a string.
Table = tuple[str, list[str], list[list[str]]]


def layouts() -> dict[str, Any]:
    """The report layouts plugins registered, by the document schema each reads."""
    from advframe import plugins

    return {e.factory.schema: e.factory for e in plugins.registry().entries["reports"].values()}


def load_documents(paths: list[str | os.PathLike[str]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Read results documents; return ``(eval documents, documents a registered layout reads)``.

    Raises:
        DataError: a file that is missing, given twice, not JSON, of a schema no layout reads, or
            malformed.
    """
    evals, others = [], []
    known = layouts()
    seen: dict[Path, Path] = {}
    for p in paths:
        path = Path(p)
        resolved = path.resolve()
        if resolved in seen:
            raise DataError(f"'{path}' is given twice (also as '{seen[resolved]}'): pass each results "
                            f"document once")
        if not path.is_file():
            raise DataError(f"results file '{path}' does not exist: pass a file written by "
                            f"'advframe eval --output' (or another command whose documents a plugin reports)")
        try:
            doc = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"'{path}' is not JSON ({exc.__class__.__name__}): pass a results document") from None
        except RecursionError:
            raise DataError(f"'{path}' is JSON nested too deeply to read: pass a results document") from None
        except OSError as exc:
            raise DataError(f"cannot read '{path}' ({exc.strerror}): pass a readable results document") from None
        seen[resolved] = path
        schema = doc.get("schema") if isinstance(doc, dict) else None
        if schema == EVAL_SCHEMA:
            problem = eval_document_problem(doc)
            evals.append(doc)
        elif schema in known:
            problem = known[schema].problem(doc)
            others.append(doc)
        else:
            raise DataError(f"'{path}' has schema {schema!r}: expected one of {', '.join([EVAL_SCHEMA, *known])}")
        if problem is not None:
            raise DataError(f"'{path}' is not a valid {schema} document: {problem}; pass the file as the "
                            f"command that writes {schema} documents wrote it")
    return evals, others


def layout_tables(evals: list[dict[str, Any]], others: list[dict[str, Any]], eps: float | None = None) -> list[Table]:
    """The tables of every registered layout that has documents (or eval documents it reads)."""
    out: list[Table] = []
    for schema, layout in layouts().items():
        out += layout.tables(evals, [d for d in others if d.get("schema") == schema], eps)
    return out


# ---------------------------------------------------------------- document checks

_NUM = (int, float)


def kind_problem(where: str, value: Any, kind: str) -> str | None:
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


def optional_problem(where: str, obj: dict[str, Any], fields: dict[str, str]) -> str | None:
    """Like :func:`fields_problem` for keys that may be absent (older documents)."""
    for key, kind in fields.items():
        if key in obj:
            problem = kind_problem(f"'{where}{key}'", obj[key], kind)
            if problem:
                return problem
    return None


def fields_problem(where: str, obj: Any, fields: dict[str, str]) -> str | None:
    if not isinstance(obj, dict):
        return f"{where or 'the document'} is not an object"
    for key, kind in fields.items():
        name = f"{where}.{key}" if where else key
        if key not in obj:
            return f"'{name}' is missing"
        problem = kind_problem(f"'{name}'", obj[key], kind)
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


def eval_document_problem(doc: dict[str, Any]) -> str | None:
    """What is wrong with an ``advframe.eval/1`` document (the keys a report reads), or None."""
    problem = fields_problem("", doc, EVAL_FIELDS) or fields_problem("clean", doc["clean"],
                                                                      {"top1": "fraction", "top5": "fraction?"})
    problem = problem or optional_problem("", doc, EVAL_OPTIONAL)
    if problem:
        return problem
    for i, run in enumerate(doc["runs"]):
        problem = fields_problem(f"runs[{i}]", run, EVAL_RUN_FIELDS) \
            or optional_problem(f"runs[{i}].", run, EVAL_RUN_OPTIONAL)
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


def pct(v: float | None) -> str:
    """A fraction as a percentage with one decimal (``0.971`` → ``97.1%``), or a dash for None."""
    return "—" if v is None else f"{100 * v:.1f}%"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def check_eps(evals: list[dict[str, Any]], others: list[dict[str, Any]], eps: float | None) -> None:
    """Refuse an eps that no run of the documents holds (the tables would be all dashes).

    Raises:
        DataError: naming the eps and those the documents hold.
    """
    if eps is None:
        return
    held = sorted({r["eps"] for d in evals + others for r in d.get("runs", []) if isinstance(r, dict) and "eps" in r})
    if held and not any(abs(e - eps) < 1e-9 for e in held):
        raise DataError(f"eps {eps:g} is in none of the documents (they hold eps {', '.join(f'{e:g}' for e in held)}): "
                        f"pass one of those to --eps")


def markdown(evals: list[dict[str, Any]], others: list[dict[str, Any]], eps: float | None = None,
             plot: str | None = None) -> str:
    """A Markdown report: per-model accuracy tables, then each registered layout's Markdown."""
    parts = ["# advframe report", ""]
    if plot:
        parts += [f"![accuracy and accuracy ratio against eps]({plot})", ""]
    for d in evals:
        top5 = d["clean"].get("top5") is not None or any(r.get("top5") is not None for r in d["runs"])
        clean = f"Clean top-1 {pct(d['clean']['top1'])}" + (f", top-5 {pct(d['clean']['top5'])}" if top5 else "")
        parts += [f"## {d['model']} on {d['dataset']}/{d['split']} ({d['examples']} examples)", "",
                  f"{clean}. Accuracy ratio = adversarial / clean top-1 accuracy (Kurakin et al. 2017, §4.3).", ""]
        rows = [[r["attack"] + (" (targeted)" if r.get("targeted") else ""), f"{r['eps']:g}", pct(r["top1"])]
                + ([pct(r["top5"])] if top5 else [])
                + ["—" if r.get("accuracy_ratio") is None else f"{r['accuracy_ratio']:.3f}",
                   str(r.get("violations", 0))]
                for r in d["runs"]]
        header = ["attack", "eps", "top-1"] + (["top-5"] if top5 else []) + ["accuracy ratio", "violations"]
        parts += [md_table(header, rows), ""]
    for schema, layout in layouts().items():
        text = layout.markdown(evals, [d for d in others if d.get("schema") == schema], eps)
        if text:
            parts += [text, ""]
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
