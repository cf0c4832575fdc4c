"""The preparation every run over attacks and an eps grid shares (evaluation, transfer).

A :class:`PreparedRun` puts the models on the device, reads the data (up to ``limit``
examples), makes one threat model per eps of the grid (the data set's grid by default),
resolves the attacks with their parameters and asks each whether it can run under the
threat, all before the first batch; then it hands out batches and books what the
engine's records add to a run's tally (:func:`book`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from advframe.data_source import as_source
from advframe.engine import Record, Violation
from advframe.errors import DataError, ParameterError
from advframe.metrics import RunTally
from advframe.model import Model, as_model
from advframe.options import RunOptions, resolve_attacks, resolve_device
from advframe.threat import ThreatModel

__all__ = ["PreparedRun", "book"]


def book(tally: RunTally, rec: Record, n: int, violations: list[Violation]) -> bool:
    """Book on ``tally`` what ``rec`` (a batch of ``n`` examples) adds whether or not it counts.

    A refused batch adds its violations, one rejected batch and its examples (and a failed
    batch when the attack misbehaved rather than left the threat model), and its refusal
    goes to ``violations``; a counted batch raises the largest perturbation seen.

    Returns:
        Whether the batch may be counted (:attr:`Record.ok <advframe.engine.Record.ok>`).
    """
    if not rec.ok:
        assert rec.refusal is not None
        violations.append(rec.refusal)
        tally.add(violations=rec.refusal.examples, rejected_batches=1, rejected_examples=n,
                  failed_batches=int(rec.refusal.reason != "threat"))
        return False
    tally.max_perturbation = max(tally.max_perturbation, rec.audit.max_perturbation if rec.audit else 0.0)
    return True


class PreparedRun:
    """The models, data, eps grid, threat models and attacks of one run, checked before any batch.

    Attributes:
        opts: the run's settings.
        device: where it runs (:func:`~advframe.options.resolve_device`).
        models: the given models as :class:`~advframe.model.Model` objects on ``device``,
            in eval mode, in the given order.
        source: the data, its first ``opts.limit`` examples.
        grid: the eps values.
        threats: one :class:`~advframe.threat.ThreatModel` per eps.
        specs: the resolved attacks.
        violations: the refusals booked so far (:meth:`book`).
        early_exit: whether named attacks may stop on the examples they have broken (class
            attribute; a transfer run sets it False, as its goal is measured on other models).

    Raises:
        DataError: data without examples.
        ParameterError: no eps and no default grid, an unknown attack or parameter, or an
            attack that cannot run under the threat model.
    """

    early_exit: ClassVar[bool] = True

    def __init__(self, models: Sequence[nn.Module], data: Any, attacks: Sequence[Any] | None,
                 eps: Sequence[float] | float | str | None, opts: RunOptions, targeted: bool = False):
        self.opts = opts
        self.device = resolve_device(opts.device)
        self.models: list[Model] = [as_model(m).to(self.device).eval() for m in models]
        self.source = as_source(data, bounds=opts.bounds).take(opts.limit)
        if len(self.source) == 0:
            raise DataError(f"data set '{self.source.name}' has no examples: pass data holding at least one")
        if isinstance(eps, (int, float, str)):  # one eps, not a grid
            eps = [eps]
        self.grid = list(eps) if eps is not None else list(self.source.default_eps)
        if not self.grid:
            raise ParameterError("no eps given and the data set has no default grid: pass --eps")
        self.threats = [ThreatModel(norm=opts.norm, eps=e, bounds=self.source.bounds, targeted=targeted)
                        for e in self.grid]
        self.specs = resolve_attacks(attacks, opts.params, early_exit=self.early_exit)
        for s in self.specs:
            s.attack.check_threat(self.threats[0], torch.zeros(1) if targeted else None)
        self.violations: list[Violation] = []
        self.channels_last = self._memory_format()

    def _memory_format(self) -> bool:
        """Whether the run uses channels_last (:func:`~advframe.precision.channels_last_applies`); converts the models."""
        from advframe.precision import channels_last_applies

        x0, _ = self.source.batch(0, 1)
        use = all(channels_last_applies(self.opts.channels_last, self.device, m, x0) for m in self.models)
        if use:
            for m in self.models:
                m.to(memory_format=torch.channels_last)
        return use

    def examples(self, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of examples from ``start`` (at most ``opts.batch_size``), on the device."""
        x, y = self.source.batch(start, min(start + self.opts.batch_size, len(self.source)))
        x = x.to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(self.device)

    def book(self, tally: RunTally, rec: Record, n: int) -> bool:
        """:func:`book` into this run's :attr:`violations`; whether ``rec`` may be counted."""
        return book(tally, rec, n, self.violations)
