"""Print the rows of docs/worst-case.md's "Measured" table from the results documents that
benchmarks/worst_case_table.sh writes (``{std,mixed,pgdat}_{worst,single}_{linf,l2}.json``).

Usage: python benchmarks/worst_case_table.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

MODELS = [("std", "`mnist_cnn_standard`"), ("mixed", "`mnist_cnn_mixed_step_ll`"), ("pgdat", "pgd_at")]
COLUMNS = ["pgd", "apgd_ce", "apgd_t", "fab_t", "square"]  # the single-attack columns, in the table's order
WORST_ORDER = ["apgd_ce", "apgd_t", "fab_t", "square", "pgd"]  # the worst-case run's order


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def rows(folder: Path) -> list[str]:
    """One markdown row per model, norm and eps found in ``folder``."""
    out = []
    for tag, label in MODELS:
        for norm in ("linf", "l2"):
            worst = _load(folder / f"{tag}_worst_{norm}.json")
            single = _load(folder / f"{tag}_single_{norm}.json")
            doc = worst or single
            if doc is None:
                continue
            for eps in sorted({r["eps"] for r in doc["runs"]}):
                alone = {r["attack"]: r["top1"] for r in (single or {"runs": []})["runs"] if r["eps"] == eps}
                entry = next(e for e in worst["worst_case"] if e["eps"] == eps) if worst else None
                cells = [label, norm, f"{eps:g}", str(doc["examples"]), _pct(doc["clean"]["top1"])]
                cells += [_pct(alone.get(name)) for name in COLUMNS]
                if entry is None:
                    cells += ["—"] * 4
                else:
                    cells += [f"**{_pct(entry['top1'])}**", " / ".join(str(entry["broke"][a]) for a in WORST_ORDER),
                              f"{entry['gradient_evaluations']:.0f} / {entry['forward_queries']:.0f}",
                              f"{entry['seconds']:.0f}" if entry["seconds"] >= 10 else f"{entry['seconds']:.1f}"]
                out.append("| " + " | ".join(cells) + " |")
    return out


if __name__ == "__main__":
    print("\n".join(rows(Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/worst_case"))))
