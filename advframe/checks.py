"""Honesty checks: what a check returns, and the dispatcher over the registered checkers.

The checks themselves (gradient masking, attack failure, label leaking, ...) live in
plugins: a plugin registers a *checker* through the ``register_checks`` hook, and
``advframe eval`` runs every registered checker after the attacks (``--no-checks``
turns them off); the results document lists the outcomes under ``"checks"``. The
built-in checker is the ``advframe_checks`` plugin (docs/checks.md). From Python::

    result = advframe.evaluate(model, data, eps=[0.1, 0.3])
    checks = run_checks(model, data, result)          # also fills result.checks
    warnings = [c for c in checks if c.status == "warn"]

:func:`advframe.evaluate` stays a pure measurement: checks may run extra attacks, so
they are a separate, explicit step.

A checker is a class or object with a ``name``, a tuple ``checks`` of the check names
it can run, and ``run(model, data, result, **options) -> list[Check]`` (``options``
always holds ``only``, the names it should run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from advframe.errors import ParameterError

PASS = "pass"
WARN = "warn"
NOT_APPLICABLE = "not_applicable"
STATUSES: tuple[str, ...] = (PASS, WARN, NOT_APPLICABLE)


@dataclass(frozen=True)
class Check:
    """The outcome of one check.

    Attributes:
        name: stable snake_case name of the check.
        status: ``"pass"``, ``"warn"`` or ``"not_applicable"``.
        evidence: one or more sentences with the numbers behind the status.
        source: the citation the check comes from.
    """

    name: str
    status: str
    evidence: str
    source: str

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"check status '{self.status}' is unknown: use one of {', '.join(STATUSES)}")

    def to_dict(self) -> dict[str, str]:
        """The entry of the results document's ``checks`` list."""
        return {"name": self.name, "status": self.status, "evidence": self.evidence, "source": self.source}


def available_checks() -> dict[str, str]:
    """Every check a registered checker can run, with the checker that runs it, in registration order."""
    from advframe import plugins

    return {check: e.name for e in plugins.registry().entries["checks"].values() for check in e.factory.checks}


def run_checks(model: Any, data: Any, result: Any, only: list[str] | tuple[str, ...] | None = None,
               **options: Any) -> list[Check]:
    """Run the registered checks on an evaluation and store them in ``result.checks``.

    Args:
        model: the evaluated model (a Model or a plain logits ``nn.Module``).
        data: the evaluated data, in any form :func:`advframe.evaluate` takes.
        result: the :class:`~advframe.evaluation.EvalResult` of the evaluation.
        only: run only these checks (default: all that the registered checkers offer).
        **options: settings passed to every checker (the built-in one takes ``attacks``,
            ``transfer_source``, ``subset``, ``device``, ``seed``, ``progress``).

    Returns:
        The checks, checker by checker in registration order; ``result.checks`` holds their dicts.

    Raises:
        ParameterError: for an unknown check name, or a setting a checker does not take.
    """
    from advframe import plugins

    offered = available_checks()
    wanted = list(offered) if only is None else list(only)
    unknown = [n for n in wanted if n not in offered]
    if unknown:
        raise ParameterError(f"unknown check(s) {', '.join(unknown)}: use some of {', '.join(offered) or 'none'} "
                             f"(the checks registered plugins offer)")
    checks: list[Check] = []
    for entry in list(plugins.registry().entries["checks"].values()):
        mine = [n for n in wanted if offered[n] == entry.name]
        if mine:
            checks.extend(entry.factory.run(model, data, result, only=mine, **options))
    result.checks = [c.to_dict() for c in checks]
    return checks


__all__ = ["Check", "NOT_APPLICABLE", "PASS", "STATUSES", "WARN", "available_checks", "run_checks"]
