"""Streaming evaluation of a model under attacks over an eps grid.

For each batch the clean predictions are computed once, then the engine
(:mod:`advframe.engine`) makes audited adversarial batches for every attack and eps;
refused batches are reported as violations and never counted. Metrics follow Kurakin
et al. 2017: top-1, top-5, success rate, accuracy ratio adv/clean (§4.3) and label
leaking (§4.2).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advframe import distributed
from advframe.attack import random_target
from advframe.checkpoint import atomic_write_text
from advframe.dataset import LabeledData, check_fits, check_labels
from advframe.engine import AttackSpec, Engine, Record, Violation
from advframe.errors import DataError, ParameterError
from advframe.metrics import RunTally, ratio, topk_correct
from advframe.model import Model, model_label
from advframe.options import EvalOptions
from advframe.prepared import PreparedRun
from advframe.progress import emit
from advframe.ops import derive_seed
from advframe.threat import ThreatModel
from advframe.worst_case import WorstCase, key

SCHEMA = "advframe.eval/1"
__all__ = ["SCHEMA", "AttackSpec", "EvalResult", "ResumeState", "RunRow", "Violation", "classify", "evaluate"]


@dataclass(kw_only=True)
class RunRow:
    """One run of an evaluation: one attack at one eps (one entry of the document's ``runs``).

    :meth:`to_dict` gives the document's entry, keys in the order below. A run of a
    worst-case evaluation also has ``worst_case_step``, ``broke`` and ``robust_after``
    (None, and left out of the entry, otherwise); keys a plugin added to an entry are
    kept in ``extra`` and written after the others.

    Attributes:
        attack: the attack's name.
        eps: the budget, in the model's input scale.
        norm: ``"linf"`` or ``"l2"``.
        targeted: whether the attack aimed at a target class.
        params: the attack's hyper-parameters.
        top1: adversarial top-1 accuracy (None when no batch was measured).
        top5: adversarial top-5 accuracy (None also when the model scores 5 classes or fewer).
        success_rate: targeted: the share classified as the target; untargeted: the share
            of clean-correct examples the attack flipped.
        accuracy_ratio: adversarial over clean top-1 (Kurakin et al. 2017, §4.3).
        label_leaks: examples the true-label attack leaves correct while its predicted-label
            twin breaks them (Kurakin §4.2); None when not measured.
        max_perturbation: the largest perturbation measured in the norm.
        violations: examples that left the threat model (in refused batches).
        gradient_evaluations: gradient evaluations per example.
        forward_queries: forward passes per example.
        seconds: time the attack took.
        examples: examples measured (in batches that passed the audit).
        rejected_batches: batches the engine refused.
        rejected_examples: examples in refused batches.
        failed: whether a batch of the run failed (the attack raised or returned nothing).
        uses_true_label: whether the attack reads the true label.
        gradient_shared_across_eps: whether the run reused gradients computed for another eps.
        gradient_evaluations_total: gradient evaluations summed over the examples (the mean
            per example times the document's examples; an attack that drops the examples it
            has broken pays only for those it still attacks).
        forward_queries_total: forward passes summed over the examples.
        worst_case_step: worst case: the attack's place in the suite (1 = first).
        broke: worst case: examples this attack broke at this eps.
        robust_after: worst case: the share of examples still robust after this attack.
        extra: the entry's keys no field holds (written by a plugin), in their order.
    """

    attack: str
    eps: float
    norm: str
    targeted: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    top1: float | None = None
    top5: float | None = None
    success_rate: float | None = None
    accuracy_ratio: float | None = None
    label_leaks: int | None = None
    max_perturbation: float = 0.0
    violations: int = 0
    gradient_evaluations: float | None = None
    forward_queries: float | None = None
    seconds: float = 0.0
    examples: int = 0
    rejected_batches: int = 0
    rejected_examples: int = 0
    failed: bool = False
    uses_true_label: bool = False
    gradient_shared_across_eps: bool = False
    gradient_evaluations_total: float | None = None
    forward_queries_total: float | None = None
    worst_case_step: int | None = None
    broke: int | None = None
    robust_after: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    #: The worst-case keys, in the entry only when ``worst_case_step`` is set.
    WORST_CASE_KEYS = ("worst_case_step", "broke", "robust_after")

    def to_dict(self) -> dict[str, Any]:
        """The results document's entry of this run."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        if self.worst_case_step is None:
            for k in self.WORST_CASE_KEYS:
                del out[k]
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any]) -> RunRow:
        """The row of a document's entry; keys it lacks take their defaults, unknown ones go to ``extra``.

        Raises:
            DataError: when the entry lacks ``attack``, ``eps`` or ``norm``.
        """
        names = {f.name for f in fields(cls)} - {"extra"}
        missing = [k for k in ("attack", "eps", "norm") if k not in entry]
        if missing:
            raise DataError(f"a run entry has no {', '.join(missing)}: pass an entry of an advframe.eval/1 "
                            f"document")
        return cls(**{k: v for k, v in entry.items() if k in names},
                   extra={k: v for k, v in entry.items() if k not in names})

    @classmethod
    def of(cls, run: RunRow | Mapping[str, Any]) -> RunRow:
        """``run`` itself when it is a row, else the row of a document's entry (:meth:`from_dict`)."""
        return run if isinstance(run, RunRow) else cls.from_dict(run)


@dataclass
class EvalResult:
    """What :func:`evaluate` returns; :meth:`to_dict` gives the results document.

    Top-5 accuracies (``clean_top5``, each run's ``top5``) are None when the model
    scores 5 classes or fewer: the label is then always among the top 5.
    """

    model: str
    dataset: str
    split: str
    examples: int
    clean_top1: float
    clean_top5: float | None
    runs: list[RunRow]
    violations: list[Violation] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # runs given as document entries (dicts) become rows
        self.runs = [RunRow.of(r) for r in self.runs]

    def to_dict(self) -> dict[str, Any]:
        """The results document (schema ``advframe.eval/1`` of DESIGN.md)."""
        return {"schema": SCHEMA, "model": self.model, "dataset": self.dataset, "split": self.split,
                "examples": self.examples, "clean": {"top1": self.clean_top1, "top5": self.clean_top5},
                "runs": [r.to_dict() for r in self.runs], "checks": self.checks,
                "violations": [v.__dict__ for v in self.violations], **self.meta}

    def run(self, attack: str, eps: float) -> RunRow:
        """The run of one attack at one eps."""
        for r in self.runs:
            if r.attack == attack and abs(r.eps - eps) < 1e-12:
                return r
        raise KeyError(f"no run for attack {attack} at eps {eps}")


def classify(model: Model, x: torch.Tensor, y: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(scores, predictions, top-1 correct, top-5 correct)`` by the model's own decision rule."""
    with torch.no_grad():
        out = model(x)
        scores, pred = model.scores(out), model.predict(out)
    return scores, pred, pred == y, topk_correct(scores, y, 5)


def _targets(mode: str, y: torch.Tensor, clean_scores: torch.Tensor, seed: int, start: int) -> torch.Tensor:
    if mode == "least_likely":
        return clean_scores.argmin(dim=1)
    g = torch.Generator().manual_seed(derive_seed(seed, "targets", start))
    return random_target(y.cpu(), clean_scores.shape[1], g).to(y.device)



class ResumeState:
    """The resume state of one evaluation: its sums after every batch, in one JSON file.

    The evaluation saves it atomically after every batch (:meth:`save`) and, started again
    with the same settings, loads it (:meth:`load`) and skips the batches done. Whoever made it
    discards it when done: :func:`evaluate` when given a path, the caller when given a
    ``ResumeState`` (``advframe eval`` does so once the checks ran and the document is
    written, so that a run killed during the checks resumes with every attack batch done).
    A ``ResumeState`` is path-like (its file's path).
    """

    #: The entries every state file holds (it may hold more: ``worst_case``, ``classes``).
    KEYS = ("config", "tallies", "clean", "violations", "done")

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def exists(self) -> bool:
        """Whether the file is there."""
        return self.path.exists()

    def validate(self) -> None:
        """Refuse a file that is not one an evaluation wrote (not JSON, or without :attr:`KEYS`).

        Raises:
            ParameterError: naming the file and what to do.
        """
        try:
            state = json.loads(self.path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            why = f"not JSON: {exc.__class__.__name__}" if not isinstance(exc, OSError) else exc.strerror
            raise ParameterError(f"--resume: the partial state '{self.path}' is damaged ({why}): delete it to start "
                                 f"over, or drop --resume") from None
        missing = [k for k in self.KEYS if not isinstance(state, dict) or k not in state]
        if missing:
            raise ParameterError(f"--resume: the partial state '{self.path}' is damaged (no {', '.join(missing)}): "
                                 f"delete it to start over, or drop --resume")

    def load(self, config: dict[str, Any]) -> dict[str, Any] | None:
        """The saved state if it was saved with ``config``; None when there is none or its settings differ."""
        if not self.path.is_file():
            return None
        state = json.loads(self.path.read_text())
        return state if state.get("config") == config else None

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` (holding :attr:`KEYS`) atomically."""
        atomic_write_text(self.path, json.dumps(state))

    def discard(self) -> None:
        """Delete the file, if it is there."""
        if self.path.exists():
            self.path.unlink()


class _Evaluation(PreparedRun):
    """The state of one evaluation: a prepared run, its tallies and resume state."""

    def __init__(self, model: nn.Module, data: Any, attacks: Sequence[Any] | None, eps: Sequence[float] | None,
                 opts: EvalOptions):
        super().__init__([model], data, attacks, eps, opts, targeted=opts.targeted)
        self.opts: EvalOptions = opts
        self.model = self.models[0]
        grid = self.grid
        self.engine = Engine(self.threats, seed=opts.seed, strict=opts.strict, amp=opts.amp)
        self.worst = WorstCase(self.specs, self.threats) if opts.worst_case else None
        self.rank, self.world = distributed.rank_and_world()
        self.config = {"attacks": [s.name for s in self.specs], "params": [s.params for s in self.specs],
                       "eps": grid, "norm": opts.norm, "targeted": opts.targeted, "target": opts.target,
                       "batch_size": opts.batch_size, "examples": len(self.source), "seed": opts.seed,
                       "label_leaks": opts.label_leaks, "worst_case": opts.worst_case, "rank": self.rank,
                       "world": self.world, **({"amp": True} if opts.amp else {})}
        self.tallies = {key(i, j): RunTally() for i in range(len(self.specs)) for j in range(len(grid))}
        self.clean = RunTally()
        self.done: set[int] = set()
        self.classes: int | None = None  # classes the model scores (from the first batch)
        given = opts.state_path
        self.state = given if isinstance(given, ResumeState) or given is None else ResumeState(given)
        self.owns_state = not isinstance(given, ResumeState)  # a path: discarded when evaluate returns
        self._load_state()

    def check_model_fits(self) -> None:
        """:func:`~advframe.dataset.check_fits` on the first examples: shapes, finite outputs, labels
        (the labels of later batches are checked as they come, :func:`~advframe.dataset.check_labels`)."""
        x0, y0 = self.source.batch(0, min(len(self.source), 64))
        check_fits(self.model, LabeledData(x0, y0, 2, self.source.bounds, self.source.name, self.source.split),
                   self.device, self.opts.model_name)

    def measures_leaks(self, spec: AttackSpec) -> bool:
        """Whether the predicted-label twin of ``spec`` is run (Kurakin §4.2).

        By default only for attacks that declare ``leaks_labels`` (one-step attacks that
        read the true label); with ``label_leaks=True`` for every attack that reads it.
        """
        if self.opts.targeted or self.opts.label_leaks is False or not spec.attack.uses_true_label:
            return False
        return bool(self.opts.label_leaks) or bool(getattr(type(spec.attack), "leaks_labels", False))

    def _load_state(self) -> None:
        state = self.state.load(self.config) if self.state is not None else None
        if state is None:
            return
        self.tallies = {k: RunTally.from_state(v) for k, v in state["tallies"].items()}
        self.clean = RunTally.from_state(state["clean"])
        if self.worst is not None:
            self.worst.rows = {k: RunTally.from_state(v) for k, v in state["worst_case"].items()}
        self.violations = [Violation(**v) for v in state["violations"]]
        self.done = set(state["done"])
        self.classes = state.get("classes")

    def _save_state(self) -> None:
        if self.state is None:
            return
        self.state.save({
            "config": self.config, "tallies": {k: v.to_state() for k, v in self.tallies.items()},
            "clean": self.clean.to_state(), "violations": [v.__dict__ for v in self.violations],
            "worst_case": {k: v.to_state() for k, v in self.worst.rows.items()} if self.worst else None,
            "done": sorted(self.done), "classes": self.classes})

    def starts(self) -> list[int]:
        """This process's batches (first example of each), a strided share of all."""
        size = self.opts.batch_size
        return [s for k, s in enumerate(range(0, len(self.source), size)) if k % self.world == self.rank]

    def batch(self, start: int) -> None:
        """Evaluate one batch and fold it into the tallies."""
        o = self.opts
        x, y = self.examples(start)
        clean_scores, clean_pred, clean_ok, clean_top5 = classify(self.model, x, y)
        self.classes = int(clean_scores.shape[1])
        check_labels(clean_scores, y, self.source.name, self.opts.model_name)
        self.clean.add(examples=int(y.shape[0]), top1=int(clean_ok.sum()), top5=int(clean_top5.sum()))
        tgt = _targets(o.target, y, clean_scores, o.seed, start) if o.targeted else None
        if self.worst is not None:
            self.worst.batch(self.engine, self.model, x, y, clean_ok, start, self.tallies, self.violations)
        for i, spec in enumerate(self.specs if self.worst is None else []):
            records = self.engine.craft(self.model, x, y, spec, attack_index=i, start=start, target=tgt)
            twins: list[Record | None] = [None] * len(records)
            if self.measures_leaks(spec):
                twins = list(self.engine.craft(self.model, x, clean_pred, spec, attack_index=i, start=start))
            for j, (rec, twin) in enumerate(zip(records, twins)):
                self._count(self.tallies[key(i, j)], rec, twin, x, y, clean_ok, tgt)
        self.done.add(start)
        self._save_state()

    def _count(self, tally: RunTally, rec: Record, twin: Record | None, x: torch.Tensor, y: torch.Tensor,
               clean_ok: torch.Tensor, tgt: torch.Tensor | None) -> None:
        n = int(y.shape[0])
        tally.add(seconds=rec.seconds, gradient_evaluations=rec.gradient_evaluations * n,
                  forward_queries=rec.forward_queries * n, shared=int(rec.shared))
        if not self.book(tally, rec, n):
            return
        assert rec.x_adv is not None
        _, adv_pred, adv_ok, adv_top5 = classify(self.model, rec.x_adv, y)
        tally.add(examples=n, clean_correct=int(clean_ok.sum()), top1=int(adv_ok.sum()), top5=int(adv_top5.sum()),
                  flipped=int((clean_ok & ~adv_ok).sum()),
                  hit_target=int((adv_pred == tgt).sum()) if tgt is not None else 0)
        if twin is not None and twin.ok:
            with torch.no_grad():
                twin_ok = self.model.predict(self.model(twin.x_adv)) == y
            tally.add(label_leaks=int((adv_ok & ~twin_ok).sum()), leak_measured=n)

    def reduce(self) -> None:
        """Sum the tallies over processes."""
        if self.world > 1:
            self.clean = distributed.all_reduce_tally(self.clean, self.device)
            self.tallies = {k: distributed.all_reduce_tally(v, self.device) for k, v in self.tallies.items()}
            self.violations = distributed.all_gather_objects(self.violations)
            if self.worst is not None:
                self.worst.rows = {k: distributed.all_reduce_tally(v, self.device) for k, v in self.worst.rows.items()}
            self.classes = max([c for c in distributed.all_gather_objects([self.classes]) if c], default=None)

    def reports_top5(self) -> bool:
        """Whether top-5 means anything: more than 5 classes (else the label is always in the top 5)."""
        classes = self.classes if self.classes is not None else getattr(self.source.data, "num_classes", None)
        return classes is None or classes > 5

    def run_entry(self, spec: AttackSpec, threat: ThreatModel, t: RunTally) -> RunRow:
        """The row of one attack at one eps (one entry of the results document's ``runs``)."""
        top1, clean_top1 = ratio(t.top1, t.examples), ratio(t.clean_correct, t.examples)
        uses_label = bool(spec.attack.uses_true_label)
        return RunRow(
            attack=spec.name, eps=threat.eps, norm=threat.norm, targeted=self.opts.targeted,
            params=spec.params, top1=top1, top5=ratio(t.top5, t.examples) if self.reports_top5() else None,
            success_rate=ratio(t.hit_target, t.examples) if self.opts.targeted else ratio(t.flipped,
                                                                                         t.clean_correct),
            accuracy_ratio=ratio(top1, clean_top1) if top1 is not None and clean_top1 else None,
            label_leaks=t.label_leaks if (t.leak_measured and uses_label) else None,
            max_perturbation=t.max_perturbation, violations=t.violations,
            gradient_evaluations=ratio(t.gradient_evaluations, self.clean.examples),
            forward_queries=ratio(t.forward_queries, self.clean.examples),
            seconds=t.seconds, examples=t.examples, rejected_batches=t.rejected_batches,
            rejected_examples=t.rejected_examples, failed=t.failed_batches > 0,
            uses_true_label=uses_label, gradient_shared_across_eps=t.shared > 0,
            gradient_evaluations_total=t.gradient_evaluations if self.clean.examples else None,
            forward_queries_total=t.forward_queries if self.clean.examples else None,
        )

    def result(self) -> EvalResult:
        """The :class:`EvalResult` of the tallies."""
        runs = [self.run_entry(spec, threat, self.tallies[key(i, j)])
                for i, spec in enumerate(self.specs) for j, threat in enumerate(self.threats)]
        extra: dict[str, Any] = {}
        if self.worst is not None:
            cells = [(i, j) for i in range(len(self.specs)) for j in range(len(self.threats))]
            runs = [replace(r, **self.worst.run_entry(i, j, self.tallies)) for r, (i, j) in zip(runs, cells)]
            extra["worst_case"] = self.worst.entries(self.tallies)
        if self.opts.amp:
            extra["amp"] = True  # bf16 autocast in the attacks' passes (counting and audit in float32)
        if self.channels_last:
            extra["channels_last"] = True
        describe = getattr(self.source.data, "describe", None)
        if callable(describe):  # e.g. an image folder's class order, recorded for whoever reads the numbers
            extra["data"] = describe()
        o = self.opts
        name = o.model_name or model_label(self.model)
        return EvalResult(model=name, dataset=self.source.name, split=self.source.split,
                          examples=self.clean.examples, clean_top1=ratio(self.clean.top1, self.clean.examples) or 0.0,
                          clean_top5=(ratio(self.clean.top5, self.clean.examples) or 0.0) if self.reports_top5()
                          else None, runs=runs,
                          violations=self.violations,
                          meta={"seed": o.seed, "batch_size": o.batch_size, "bounds": list(self.source.bounds),
                                "target_mode": o.target if o.targeted else None, "processes": self.world,
                                **extra})


def evaluate(model: nn.Module, data: Any, attacks: Sequence[Any] | None = None, eps: Sequence[float] | None = None,
             **options: Any) -> EvalResult:
    """Evaluate ``model`` on ``data`` under each attack at each eps.

    Args:
        model: a Model, or a plain ``nn.Module`` returning logits (wrapped with
            cross-entropy and arg-max).
        data: a :class:`~advframe.dataset.LabeledData`, an ``(x, y)`` pair of tensors,
            or a map-style torch dataset of ``(x, y)`` items.
        attacks: attack names or Attack objects (default: the registry's default attack).
        eps: the eps grid in the model's input scale (default: the data set's grid); one
            number is a grid of one.
        **options: the settings of :class:`~advframe.options.EvalOptions` (``norm``,
            ``params``, ``targeted``, ``target``, ``batch_size``, ``limit``, ``device``,
            ``seed``, ``label_leaks``, ``bounds``, ``progress``, ``strict``,
            ``state_path``, ``model_name``); an unknown one is an error.

    Returns:
        An :class:`EvalResult`.
    """
    run = _Evaluation(model, data, attacks, eps, EvalOptions.of(options))
    sizes = {start: min(start + run.opts.batch_size, len(run.source)) - start for start in run.starts()}
    total = sum(sizes.values())
    done = sum(n for start, n in sizes.items() if start in run.done)
    # one event before the first batch, so a progress bar starts its clock (and shows) at once
    emit(run.opts.progress, "evaluate", done, total, clean_top1=ratio(run.clean.top1, run.clean.examples))
    run.check_model_fits()
    for start, n in sizes.items():
        if start in run.done:
            continue
        run.batch(start)
        done += n
        emit(run.opts.progress, "evaluate", done, total, clean_top1=ratio(run.clean.top1, run.clean.examples))
    run.reduce()
    result = run.result()
    if run.state is not None and run.owns_state and run.rank == 0:
        run.state.discard()
    return result
