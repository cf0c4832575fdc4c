"""The adversarial-batch engine: audited adversarial examples for one model and batch.

Everything in advframe that attacks a model goes through :meth:`Engine.craft`: the
evaluator, black-box transfer, the checks' probe and adversarial training. For one
model, one batch, one attack and an eps grid it yields one :class:`Record` per eps,
holding the adversarial batch, its audit against the threat model, the passes and
queries the attack spent, the seconds and the seed used. The engine owns:

* **seeding**: :func:`attack_seed`, :func:`~advframe.ops.derive_seed` of the batch
  position, attack index and eps index, so results do not depend on how batches are spread over processes;
* **grid sharing**: it calls the attack's :meth:`~advframe.attack.Attack.grid`, which
  shares work over the grid when the attack says it can, and books shared costs as
  equal shares;
* **integrity**: the attack gets its own copy of the clean batch; one that writes into
  it, raises, or returns something that is not a batch like its input is refused, and
  every returned batch is audited (a batch that leaves the ball or the bounds is
  refused, never counted);
* **counting and timing**, as reported by the attack's counters.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from advframe.attack import AttackProtocol, Crafted
from advframe.errors import AdvframeError, ThreatViolation
from advframe.model import Model
from advframe.ops import derive_seed
from advframe.threat import AuditReport, ThreatModel


def attack_seed(seed: int, start: int, attack_index: int, eps_index: int) -> int:
    """The seed of one (batch, attack, eps) cell: a function of positions only.

    ``start`` is the batch's first example in the data, so a batch gets the same seed on
    any process and after a resume.
    """
    return derive_seed(seed, start, attack_index, eps_index)


@dataclass(frozen=True)
class AttackSpec:
    """An attack of a run: the name it is reported under and the constructed object."""

    name: str
    attack: AttackProtocol
    plugin: str = ""

    @property
    def params(self) -> dict[str, Any]:
        """The attack's hyper-parameters."""
        return dict(self.attack.params)

    @property
    def label(self) -> str:
        """``name`` and, where known, the plugin it came from (for refusal messages)."""
        return f"'{self.name}'" + (f" (plugin {self.plugin})" if self.plugin else "")


@dataclass
class Violation:
    """One refused adversarial batch: it left the threat model, or the attack misbehaved."""

    attack: str
    eps: float
    batch_start: int
    examples: int
    max_excess: float
    reason: str = "threat"

    def describe(self) -> str:
        """One sentence for reports and errors."""
        if self.reason != "threat":
            return (f"attack '{self.attack}' at eps={self.eps:g} was refused on the batch starting at example "
                    f"{self.batch_start}: {self.reason}; batch not counted")
        return (f"attack '{self.attack}' at eps={self.eps:g} left the threat model on batch starting at "
                f"example {self.batch_start}: {self.examples} example(s), excess {self.max_excess:.3g}; "
                f"batch not counted")


@dataclass
class Record:
    """The engine's output for one (attack, eps) on one batch.

    Attributes:
        attack: the attack's reported name.
        attack_index: its position in the run.
        eps_index: the threat's position in the grid.
        threat: the threat model.
        x_adv: the adversarial batch, or None when it was refused.
        audit: the audit report (None when the attack failed before one could be made).
        gradient_evaluations: forward+backward passes per example of the batch booked to this
            eps (:meth:`~advframe.attack.Attack.booked`).
        forward_queries: forward-only passes per example of the batch booked to this eps.
        seconds: wall-clock seconds booked to this eps.
        seed: the seed set before the attack ran (None when the RNG was left alone).
        shared: the cost was shared over the grid (see :class:`~advframe.attack.Crafted`).
        refusal: why the batch was refused, or None when it may be counted.
    """

    attack: str
    attack_index: int
    eps_index: int
    threat: ThreatModel
    x_adv: torch.Tensor | None
    audit: AuditReport | None
    gradient_evaluations: float
    forward_queries: float
    seconds: float
    seed: int | None
    shared: bool
    refusal: Violation | None

    @property
    def ok(self) -> bool:
        """True when the batch passed the audit and may be counted."""
        return self.refusal is None


def _bad_output(crafted: Any, x: torch.Tensor) -> str | None:
    """Why an attack's output for one threat is not a batch like ``x``, or None."""
    if not isinstance(crafted, Crafted):
        return f"returned {type(crafted).__name__} instead of a Crafted record"
    adv = crafted.x_adv
    if not isinstance(adv, torch.Tensor):
        return f"returned {type(adv).__name__} instead of a tensor"
    if adv.shape != x.shape:
        return f"returned shape {tuple(adv.shape)} for inputs of shape {tuple(x.shape)}"
    if adv.dtype != x.dtype:
        return f"returned dtype {adv.dtype} for inputs of dtype {x.dtype}"
    if adv.device != x.device:
        return f"returned a tensor on {adv.device} for inputs on {x.device}"
    return None


class Engine:
    """Audited adversarial batches for the threat models of one run.

    Args:
        threats: the threat models of the grid (one norm, usually one per eps).
        seed: the run's seed; ``None`` leaves torch's RNG alone (training, which seeds
            its attacks by step).
        strict: raise on the first refused batch instead of recording it.
        context: prefix for the strict-mode error (e.g. the source model's name).
        amp: run the attacks' passes under bf16 autocast (:class:`advframe.precision.Autocast`);
            the batches they return stay float32 and are audited in float32, and the examples
            whose goal only the bf16 view met are attacked again in float32.
    """

    def __init__(self, threats: Sequence[ThreatModel], *, seed: int | None = 0, strict: bool = False,
                 context: str = "", amp: bool = False):
        self.threats = list(threats)
        self.seed = seed
        self.strict = strict
        self.context = context
        self.amp = amp

    def craft(self, model: Model, x: torch.Tensor, y: torch.Tensor, spec: AttackSpec, *, attack_index: int = 0,
              start: int = 0, target: torch.Tensor | None = None, eps: Sequence[int] | None = None) -> list[Record]:
        """Run one attack on one batch over the grid (or the ``eps`` indices of it); audit every result.

        Args:
            model: the attacked Model, in eval mode.
            x: the clean batch (never handed to the attack itself: it gets a copy).
            y: the labels the attack reads (true labels, or predictions for a label-leak twin).
            spec: the attack.
            attack_index: the attack's position in the run (enters the seed).
            start: the batch's first example in the data (enters the seed).
            target: target classes for targeted threats.
            eps: indices of the threats to run (default: all), which keep their seeds.

        Returns:
            One :class:`Record` per threat run, in order.

        Raises:
            ThreatViolation: in ``strict`` mode, for a refused batch.
            AdvframeError: a usage error the attack raised (e.g. a parameter it refuses).
        """
        indices = list(range(len(self.threats))) if eps is None else list(eps)
        threats = [self.threats[j] for j in indices]
        seeds = None if self.seed is None else [attack_seed(self.seed, start, attack_index, j) for j in indices]
        cells = [_Cell(spec.name, attack_index, j, t, None if seeds is None else seeds[k], start, int(x.shape[0]))
                 for k, (j, t) in enumerate(zip(indices, threats))]
        attacked, labels = x.detach().clone(), y.detach().clone()
        seen = model
        if self.amp:  # the attacks' passes in bf16; audit, recheck and counting stay float32
            from advframe.precision import Autocast

            seen = Autocast(model, x.device.type).eval()
        try:
            reachable = [t.within_reach(x) for t in threats]  # also for attacks not built on Attack
            crafted = spec.attack.grid(seen, attacked, labels, reachable, target, seeds)
        except AdvframeError:
            raise
        except Exception as exc:  # a buggy or hostile attack must not end the run
            return self._raise_if_strict([c.failed(f"attack {spec.label} raised {_raised(exc)}") for c in cells])
        if not torch.equal(attacked, x) or not torch.equal(labels, y):
            return self._raise_if_strict([c.failed(f"attack {spec.label} wrote into its input batch") for c in cells])
        if not isinstance(crafted, list) or len(crafted) != len(threats):
            got = len(crafted) if isinstance(crafted, list) else type(crafted).__name__
            why = f"attack {spec.label} returned {got} results for {len(threats)} threat models"
            return self._raise_if_strict([c.failed(why) for c in cells])
        records = [c.audited(out, x, spec) for c, out in zip(cells, crafted)]
        if seen is not model:
            records = [self._float32_recheck(model, seen, x, y, spec, r, start, target) for r in records]
        return self._raise_if_strict(records)

    def _float32_recheck(self, model: Model, seen: Model, x: torch.Tensor, y: torch.Tensor, spec: AttackSpec,
                         rec: Record, start: int, target: torch.Tensor | None) -> Record:
        """Under ``amp``: attack again, in float32, the examples whose goal only the bf16 view met.

        An attack that stops on examples it believes broken (APGD, FAB, Square) would leave
        such an example half-attacked, and the float32 count would call it robust. Here the
        attack runs again without autocast on exactly those examples (same seed), and their
        rows are replaced; the merged batch is audited again.
        """
        if rec.x_adv is None:
            return rec
        with torch.no_grad():
            bf16, fp32 = seen.predict(seen(rec.x_adv)), model.predict(model(rec.x_adv))
        met = (lambda p: p == target) if target is not None else (lambda p: p != y)
        redo = met(bf16) & ~met(fp32)
        if not bool(redo.any()):
            return rec
        (sub,) = Engine(self.threats, seed=self.seed, context=self.context).craft(
            model, x[redo], y[redo], spec, attack_index=rec.attack_index, start=start,
            target=None if target is None else target[redo], eps=[rec.eps_index])
        if sub.x_adv is None:
            return replace(rec, x_adv=None, refusal=sub.refusal)
        merged = rec.x_adv.clone()
        merged[redo] = sub.x_adv
        share = float(redo.sum()) / int(x.shape[0])
        return replace(rec, x_adv=merged, audit=rec.threat.audit(merged, x),
                       gradient_evaluations=rec.gradient_evaluations + share * sub.gradient_evaluations,
                       forward_queries=rec.forward_queries + share * sub.forward_queries,
                       seconds=rec.seconds + sub.seconds)

    def _raise_if_strict(self, records: list[Record]) -> list[Record]:
        if self.strict:
            for r in records:
                if r.refusal is not None:
                    raise ThreatViolation(f"{self.context}{r.refusal.describe()}")
        return records


@dataclass(frozen=True)
class _Cell:
    """Where one (attack, eps) of a batch stands: what its record is made of."""

    attack: str
    attack_index: int
    eps_index: int
    threat: ThreatModel
    seed: int | None
    start: int
    n: int

    def failed(self, reason: str) -> Record:
        """The record of an attack refused for misbehaving."""
        refusal = Violation(self.attack, self.threat.eps, self.start, self.n, 0.0, reason)
        return Record(self.attack, self.attack_index, self.eps_index, self.threat, None, None, 0.0, 0.0, 0.0,
                      self.seed, False, refusal)

    def audited(self, crafted: Any, x: torch.Tensor, spec: AttackSpec) -> Record:
        """The record of one returned batch, after its shape check and audit."""
        bad = _bad_output(crafted, x)
        if bad is not None:
            return self.failed(f"attack {spec.label} {bad}")
        report = self.threat.audit(crafted.x_adv, x)
        refusal = None if report.ok else Violation(self.attack, self.threat.eps, self.start, report.violations,
                                                   report.max_excess)
        return Record(self.attack, self.attack_index, self.eps_index, self.threat,
                      crafted.x_adv.detach() if report.ok else None, report, float(crafted.gradient_evaluations),
                      float(crafted.forward_queries), float(crafted.seconds), self.seed, bool(crafted.shared),
                      refusal)


def _raised(exc: BaseException) -> str:
    """``"ValueError: message at file.py:12"``."""
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" at {frame[0].filename.rsplit('/', 1)[-1]}:{frame[0].lineno}" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


def craft_audited(model: Model, x: torch.Tensor, y: torch.Tensor, spec: AttackSpec, threat: ThreatModel,
                  target: torch.Tensor | None = None) -> torch.Tensor:
    """One audited adversarial batch, for adversarial training; any refusal raises.

    The RNG is left to the caller (defenses seed their attacks by training step).

    Raises:
        ThreatViolation: when the attack's batch is refused.
    """
    (record,) = Engine([threat], seed=None, strict=True, context="adversarial training: ").craft(
        model, x, y, spec, target=target)
    if record.x_adv is None:  # unreachable: strict mode raised for every refusal
        raise ThreatViolation(f"adversarial training: attack {spec.label} made no batch")
    return record.x_adv


def craft_audited_per_example(model: Model, x: torch.Tensor, y: torch.Tensor, spec: AttackSpec,
                              threat: ThreatModel, eps: torch.Tensor) -> torch.Tensor:
    """One audited adversarial batch with a radius per example (Kurakin et al. 2017's ε ~ |N(0, σ)|).

    The radii are a grid: the engine crafts the attack at the threat model of radius
    ``eps[i]`` for every ``i`` and audits each result like any other, and row ``i`` of the
    answer is row ``i`` of the batch crafted at ``eps[i]``. An attack that shares its work
    over a grid (a one-step attack: one gradient, its ε-free direction scaled to each
    radius) pays for it once; memory grows with ``len(eps)`` batches of ``len(eps)`` rows.
    The RNG is left to the caller, as in :func:`craft_audited`.

    Args:
        model: the attacked Model, in eval mode.
        x: the clean batch.
        y: its labels.
        spec: the attack.
        threat: the threat model whose radius is replaced per example.
        eps: one radius per example of ``x``.

    Returns:
        The adversarial batch, every row audited against its own radius.

    Raises:
        ThreatViolation: when the attack's batch at any radius is refused.
    """
    if x.shape[0] == 0:
        return x.detach()
    radii = [float(e) for e in eps.detach().cpu().to(torch.float64)]
    records = Engine([threat.with_eps(e) for e in radii], seed=None, strict=True,
                     context="adversarial training: ").craft(model, x, y, spec)
    return torch.stack([r.x_adv[i] for i, r in enumerate(records) if r.x_adv is not None])


def audited_generated(x_adv: torch.Tensor, x: torch.Tensor, threat: ThreatModel, source: str) -> torch.Tensor:
    """A batch a generator network made from ``x``, audited like an attack's, its graph kept.

    Generator networks (the adversarial networks plugin) are trained through their
    output, so it cannot be crafted by :meth:`Engine.craft`, which detaches. Their
    ``perturb`` hands every batch here instead: it is audited against ``threat`` and
    returned unchanged (still differentiable) when it may be used.

    Args:
        x_adv: the generated batch.
        x: the clean batch it was made from.
        threat: the threat model the generator promises.
        source: what made it, for the refusal message.

    Raises:
        ThreatViolation: when an example leaves the ball or the bounds, or is not finite.
    """
    report = threat.audit(x_adv.detach(), x.detach())
    if not report.ok:
        refusal = Violation(source, threat.eps, 0, report.violations, report.max_excess)
        raise ThreatViolation(refusal.describe())
    return x_adv
