"""Worst-case robust accuracy over an ordered list of attacks (a suite).

An example counts as robust at an eps only if it is classified correctly when clean and
every attack of the list fails on it (the number RobustBench ranks; Croce & Hein, ICML
2020). The attacks run in the given order, each only on the examples still robust at
that eps, so an example broken early costs no later attack anything: the passes spent
and the examples each attack did not need to attack are both reported. Every
adversarial batch goes through the engine and its audit; a refused batch breaks
nothing (its examples stay robust) and is reported as a violation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from advframe.engine import AttackSpec, Engine, Violation
from advframe.errors import ParameterError
from advframe.metrics import RunTally, ratio
from advframe.model import Model
from advframe.prepared import book
from advframe.threat import ThreatModel


def key(i: int, j: int) -> str:
    """The tally key of attack ``i`` at eps ``j``."""
    return f"{i}:{j}"


class WorstCase:
    """The tallies of a worst-case evaluation: one row per eps, one cell per (attack, eps).

    Args:
        specs: the attacks, in run order.
        threats: the threat models of the grid.
    """

    def __init__(self, specs: Sequence[AttackSpec], threats: Sequence[ThreatModel]):
        names = [s.name for s in specs]
        twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
        if twice is not None:
            raise ParameterError(f"attack '{twice}' is named twice in the worst case: name each attack once "
                                 f"(its results are reported by name)")
        self.specs = list(specs)
        self.threats = list(threats)
        self.rows = {str(j): RunTally() for j in range(len(threats))}

    def batch(self, engine: Engine, model: Model, x: torch.Tensor, y: torch.Tensor, clean_ok: torch.Tensor,
              start: int, tallies: dict[str, RunTally], violations: list[Violation]) -> None:
        """Run the cascade on one batch at every eps and fold it into the tallies."""
        n = int(y.shape[0])
        for j in range(len(self.threats)):
            robust = clean_ok.clone()
            row = self.rows[str(j)]
            row.add(examples=n, clean_correct=int(clean_ok.sum()))
            for i, spec in enumerate(self.specs):
                idx = robust.nonzero().flatten()
                if idx.numel() == 0:
                    break
                (rec,) = engine.craft(model, x[idx], y[idx], spec, attack_index=i, start=start, eps=[j])
                m = int(idx.numel())
                cost = {"seconds": rec.seconds, "gradient_evaluations": rec.gradient_evaluations * m,
                        "forward_queries": rec.forward_queries * m}
                cell = tallies[key(i, j)]
                cell.add(**cost)
                row.add(**cost)
                if not book(cell, rec, m, violations):
                    continue
                with torch.no_grad():
                    ok = model.predict(model(rec.x_adv)) == y[idx]
                broke = int((~ok).sum())
                cell.add(examples=m, clean_correct=m, top1=m - broke, flipped=broke, broke=broke)
                robust[idx[~ok]] = False
            row.add(top1=int(robust.sum()))

    def entries(self, tallies: dict[str, RunTally]) -> list[dict[str, Any]]:
        """The results document's ``worst_case`` list, one entry per eps."""
        out = []
        for j, threat in enumerate(self.threats):
            row = self.rows[str(j)]
            cells = [(s.name, tallies[key(i, j)]) for i, s in enumerate(self.specs)]
            attacked = {n: c.examples + c.rejected_examples for n, c in cells}
            out.append({
                "eps": threat.eps, "norm": threat.norm, "examples": row.examples,
                "top1": ratio(row.top1, row.examples), "clean_top1": ratio(row.clean_correct, row.examples),
                "attacks": [n for n, _ in cells],
                "broke": {n: c.broke for n, c in cells},
                "attacked": attacked,
                "spared": {n: row.clean_correct - attacked[n] for n, _ in cells},
                "gradient_evaluations": ratio(row.gradient_evaluations, row.examples),
                "forward_queries": ratio(row.forward_queries, row.examples),
                "seconds": row.seconds,
                "gradient_evaluations_by_attack": {n: ratio(c.gradient_evaluations, row.examples) for n, c in cells},
                "forward_queries_by_attack": {n: ratio(c.forward_queries, row.examples) for n, c in cells},
                "seconds_by_attack": {n: c.seconds for n, c in cells},
                "violations": sum(c.violations for _, c in cells),
            })
        return out

    def run_entry(self, i: int, j: int, tallies: dict[str, RunTally]) -> dict[str, Any]:
        """The worst-case fields of attack ``i``'s run at eps ``j`` (see :class:`~advframe.evaluation.RunRow`)."""
        row = self.rows[str(j)]
        broken_so_far = sum(tallies[key(k, j)].broke for k in range(i + 1))
        return {"worst_case_step": i + 1, "broke": tallies[key(i, j)].broke,
                "robust_after": ratio(row.clean_correct - broken_so_far, row.examples)}
