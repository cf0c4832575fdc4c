"""The transfer layouts of ``advframe report``: matrices and the white-box / black-box table.

* transfer-rate and error-rate matrices, rows sources and columns targets, top-1 and top-5,
  as in Kurakin, Goodfellow & Bengio, *Adversarial Machine Learning at Scale* (ICLR 2017),
  Tables 4 and 6;
* the white-box / black-box table of *A Direct Approach to Robust Deep Learning Using
  Adversarial Networks* (ICLR 2019 submission), Table 1: one row per model, columns clean
  ("No Noise"), white-box attacks, then each attack transferred from each source model
  ("FGS(A')").

Registered as the report layout ``transfer`` for ``advframe.transfer/1`` documents.
"""

from __future__ import annotations

import json
from typing import Any

from advframe.report import Table, check_eps, fields_problem, kind_problem, md_table, pct
from advframe_transfer.transfer import SCHEMA

TITLES = {"transfer_rate": "transfer rate", "error_rate": "error rate"}

TRANSFER_FIELDS = {"dataset": "str", "split": "str", "examples": "count", "norm": "norm", "sources": "list",
                   "targets": "list", "clean": "dict", "runs": "list", "matrices": "list", "definitions": "dict"}


def transfer_document_problem(doc: dict[str, Any]) -> str | None:
    """What is wrong with an ``advframe.transfer/1`` document (the keys a report reads), or None."""
    problem = fields_problem("", doc, TRANSFER_FIELDS) or fields_problem(
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
        problem = fields_problem(f"clean.{name}", c, {"top1": "fraction?"})
        if problem:
            return problem
    rows, cols = len(doc["sources"]), len(doc["targets"])
    for i, m in enumerate(doc["matrices"]):
        where = f"matrices[{i}]"
        problem = fields_problem(where, m, {"attack": "str", "eps": "size", "transfer_rate": "dict",
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
                        problem = kind_problem(f"a cell of '{where}.{metric}.{k}'", v, "fraction?")
                        if problem:
                            return problem
    for i, r in enumerate(doc["runs"]):
        problem = fields_problem(f"runs[{i}]", r, {"source": "str", "target": "str", "attack": "str",
                                                    "eps": "size", "accuracy": "dict"}) \
            or fields_problem(f"runs[{i}].accuracy", r.get("accuracy"), {"top1": "fraction?"})
        if problem:
            return problem
    return None


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
                rows = [[src] + [pct(v) for v in row] for src, row in zip(doc["sources"], matrix)]
                parts.append(md_table(["source \\ target"] + list(doc["targets"]), rows))
                parts.append("")
    return "\n".join(parts)


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
    """The white-box / black-box layout of the adversarial-networks paper's Table 1, at one eps.

    Rows are models; columns ``clean``, then each white-box attack, headed by its name as
    that Table 1 heads "FGS" (top-1 accuracy from an eval document, else from the
    diagonal of a transfer document), then ``attack(source)``: the model's top-1 accuracy
    on the attack's examples made on another model, as it heads "FGS(A')" (a transfer
    document). ``eps`` defaults to the largest eps of the transfer documents (else of the
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
    rows = [[m, pct(clean[m])] + [pct(white.get((m, a))) for a in white_cols]
            + [pct(black[(m, a, s)]) if (m, a, s) in black else "—" for a, s in black_cols] for m in models]
    return header, rows, eps


def matrix_rows(doc: dict[str, Any], attack: str, eps: float, metric: str) -> Table:
    """One attack's matrix (rows sources, columns targets), top-1 and top-5 side by side in each cell."""
    m = next(x for x in doc["matrices"] if x["attack"] == attack and x["eps"] == eps)
    title = (f"{TITLES[metric]} · {attack} · eps={eps:g} · {doc['examples']} examples "
             f"(rows source, columns target; top-1 | top-5)")
    rows = [[src, *[f"{pct(a)} | {pct(b)}" for a, b in zip(r1, r5)]]
            for src, r1, r5 in zip(doc["sources"], m[metric]["top1"], m[metric]["top5"])]
    return title, ["source \\ target", *doc["targets"]], rows


class TransferReport:
    """The report layout for ``advframe.transfer/1`` documents."""

    name = "transfer"
    schema = SCHEMA
    summary = "transfer matrices (Kurakin et al. 2017, Tables 4, 6) and the white-box / black-box table"

    @staticmethod
    def problem(doc: dict[str, Any]) -> str | None:
        """What is wrong with a transfer document, or None."""
        return transfer_document_problem(doc)

    @staticmethod
    def tables(evals: list[dict[str, Any]], docs: list[dict[str, Any]], eps: float | None) -> list[Table]:
        """Every matrix of the transfer documents, then the white-box / black-box table (eval documents alone too)."""
        out = [matrix_rows(doc, m["attack"], m["eps"], metric)
               for doc in docs for m in doc["matrices"] for metric in ("transfer_rate", "error_rate")]
        header, rows, used = white_black_table(evals, docs, eps)
        if rows and used is not None:
            out.append((f"white-box and black-box top-1 accuracy · eps={used:g} (layout of Table 1 of 'A Direct "
                        f"Approach to Robust Deep Learning Using Adversarial Networks': attack = white-box, "
                        f"attack(S) = examples made on S)", header, rows))
        return out

    @staticmethod
    def markdown(evals: list[dict[str, Any]], docs: list[dict[str, Any]], eps: float | None) -> str:
        """The white-box / black-box table and each document's matrices, as Markdown."""
        parts = []
        header, rows, used = white_black_table(evals, docs, eps)
        if rows and used is not None:
            parts += [f"## White-box and black-box top-1 accuracy, eps={used:g}", "",
                      "Layout of Table 1 of 'A Direct Approach to Robust Deep Learning Using Adversarial Networks': "
                      "`attack` columns are white-box, `attack(S)` columns the accuracy on the attack's examples made "
                      "on source model S (black-box).", "", md_table(header, rows), ""]
        parts += [transfer_markdown(d) + "\n" for d in docs]
        return "\n".join(parts).rstrip()
