"""The shared context checks read, and the citations (the outcome type :class:`advframe.checks.Check` is core)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from advframe.checks import NOT_APPLICABLE, PASS, STATUSES, WARN, Check
from advframe.evaluation import RunRow
from advframe_checks.probe import Probe

ATHALYE = ("Athalye, Carlini & Wagner 2018, Obfuscated Gradients Give a False Sense of Security (ICML), "
           "§3.1 characteristic behaviours of obfuscated gradients")
ATHALYE_EOT = "Athalye, Carlini & Wagner 2018, Obfuscated Gradients Give a False Sense of Security, §4.2 (EOT)"
CARLINI = "Carlini et al. 2019, On Evaluating Adversarial Robustness (arXiv:1902.06705), evaluation checklist"
KURAKIN = "Kurakin, Goodfellow & Bengio 2017, Adversarial Machine Learning at Scale (ICLR)"
CROCE = ("Croce & Hein 2020, Reliable Evaluation of Adversarial Robustness with an Ensemble of Diverse "
         "Parameter-free Attacks (AutoAttack, ICML), its built-in checks")
CROCE_FLAGS = ("Croce & Hein 2020, Reliable Evaluation of Adversarial Robustness with an Ensemble of Diverse "
               "Parameter-free Attacks (AutoAttack, ICML), its flags (flags_doc.md of fra31/auto-attack)")


def cite(*sources: str) -> str:
    """Join citations with ``"; "``."""
    return "; ".join(sources)


@dataclass
class Context:
    """What every check reads.

    Attributes:
        result: the evaluation (an :class:`~advframe.evaluate.EvalResult`).
        probe: the subset on which checks run their own attacks.
        norm: the evaluation's norm.
        transfer_source: an optional second model to transfer adversarial examples from.
        grid: the evaluation's eps values above zero, ascending.
        rows: the evaluation's runs as rows (a document's entries made rows with
            :meth:`~advframe.evaluation.RunRow.from_dict`).
    """

    result: Any
    probe: Probe
    norm: str
    transfer_source: Any | None
    grid: list[float]
    rows: list[RunRow]

    @property
    def on_probe(self) -> str:
        """``"on the first 200 examples"``: how evidence names the probe."""
        return f"on the first {self.probe.n} examples"

    def runs(self, *, untargeted: bool = True) -> list[RunRow]:
        """The evaluation's runs in the evaluation's norm with a measured top-1 over all its examples.

        Steps of a worst-case evaluation are left out: each ran only on the examples still
        robust before it, so its top-1 is over that subset and compares with no other run.
        """
        return [r for r in self.rows
                if r.top1 is not None and r.examples and r.norm == self.norm
                and not (untargeted and r.targeted) and r.worst_case_step is None]

    def run_of(self, attack: str, eps: float) -> RunRow | None:
        """The untargeted measured run of ``attack`` at ``eps``, if the evaluation has it."""
        for r in self.runs():
            if r.attack == attack and abs(r.eps - eps) <= 1e-12:
                return r
        return None


def join(sentences: Iterable[str]) -> str:
    """Join evidence sentences, each ending with a full stop."""
    out = []
    for s in sentences:
        s = s.strip()
        if s:
            out.append(s if s.endswith(".") else s + ".")
    return " ".join(out)


__all__ = ["ATHALYE", "ATHALYE_EOT", "CARLINI", "CROCE", "CROCE_FLAGS", "KURAKIN", "NOT_APPLICABLE", "PASS", "STATUSES", "WARN", "Check",
           "Context", "cite", "join"]
