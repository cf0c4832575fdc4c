"""The table of docs/defenses-measured.md: one row per defense, from results documents.

Usage::

    python benchmarks/robust_table.py DIR

DIR holds, per row ``NAME``: ``NAME.pgd.json`` (``advframe eval --attack pgd --eps 0.3``,
PGD-40 with random start), ``NAME.aa.json`` (``advframe eval --suite autoattack``; its
cells are printed in bold) and/or ``NAME.aaf.json`` (``--suite autoattack_fast``, used
for the eps the full suite did not cover), and ``NAME.train.json`` (``{"label": ...,
"seconds": ..., "passes": ..., "width": ...}``: the row's name, training seconds as text,
forward/backward passes per training digit, width factor); ``order.json`` lists the rows.
Prints the table's markdown rows.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def worst(doc: dict, eps: float) -> float | None:
    for entry in doc.get("worst_case") or []:
        if abs(entry["eps"] - eps) < 1e-9:
            return entry["top1"]
    return None


def row(folder: Path, name: str) -> str:
    pgd = json.loads((folder / f"{name}.pgd.json").read_text())
    train = json.loads((folder / f"{name}.train.json").read_text())
    cells = []
    for eps in (0.1, 0.2, 0.3):
        full, fast = folder / f"{name}.aa.json", folder / f"{name}.aaf.json"
        value = worst(json.loads(full.read_text()), eps) if full.is_file() else None
        if value is not None:
            cells.append(f"**{pct(value)}**")  # the full suite
        else:
            cells.append(pct(worst(json.loads(fast.read_text()), eps)) if fast.is_file() else "—")
    run = next(r for r in pgd["runs"] if r["attack"] == "pgd" and abs(r["eps"] - 0.3) < 1e-9)
    return (f"| {train.get('label', name)} | {train['width']:g} | {pct(pgd['clean']['top1'])} | {pct(run['top1'])} | "
            + " | ".join(cells) + f" | {train['seconds']} | {train['passes']:g} |")


def main() -> None:
    folder = Path(sys.argv[1])
    names = json.loads((folder / "order.json").read_text()) if (folder / "order.json").is_file() \
        else sorted({p.name.split(".")[0] for p in folder.glob("*.pgd.json")})
    for name in names:
        print(row(folder, name))


if __name__ == "__main__":
    main()
