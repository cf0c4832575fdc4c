"""Streaming evaluation of a model under attacks over an eps grid.

For each batch the clean predictions are computed once, then the engine
(:mod:`advframe.engine`) makes audited adversarial batches for every attack and eps;
refused batches are reported as violations and never counted. Metrics follow Kurakin
et al. 2017: top-1, top-5, success rate, accuracy ratio adv/clean (§4.3) and label
leaking (§4.2).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advframe import distributed
from advframe.attack import random_target
from advframe.checkpoint import atomic_write_text
from advframe.data_source import as_source
from advframe.dataset import LabeledData, check_fits
from advframe.engine import AttackSpec, Engine, Record, Violation
from advframe.errors import DataError, ParameterError
from advframe.metrics import RunTally, ratio, topk_correct
from advframe.model import Model, as_model, model_label
from advframe.options import EvalOptions, resolve_attacks
from advframe.progress import emit
from advframe.threat import ThreatModel
from advframe.worst_case import WorstCase, key

SCHEMA = "advframe.eval/1"
__all__ = ["SCHEMA", "AttackSpec", "EvalResult", "Violation", "classify", "evaluate"]


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
    runs: list[dict[str, Any]]
    violations: list[Violation] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The results document (schema ``advframe.eval/1`` of DESIGN.md)."""
        return {"schema": SCHEMA, "model": self.model, "dataset": self.dataset, "split": self.split,
                "examples": self.examples, "clean": {"top1": self.clean_top1, "top5": self.clean_top5},
                "runs": self.runs, "checks": self.checks,
                "violations": [v.__dict__ for v in self.violations], **self.meta}

    def run(self, attack: str, eps: float) -> dict[str, Any]:
        """The run of one attack at one eps."""
        for r in self.runs:
            if r["attack"] == attack and abs(r["eps"] - eps) < 1e-12:
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
    g = torch.Generator().manual_seed(seed * 7919 + start)
    return random_target(y.cpu(), clean_scores.shape[1], g).to(y.device)


_key = key


def check_labels(scores: torch.Tensor, y: torch.Tensor, name: str) -> None:
    """Refuse labels the model has no score for (label 15 for a 10-class model counted as a miss).

    Raises:
        DataError: naming the label and the number of classes the model scores.
    """
    if scores.dim() == 2 and y.numel() and int(y.max()) >= scores.shape[1]:
        raise DataError(f"data set '{name}' has label {int(y.max())}, but the model scores only {scores.shape[1]} "
                        f"classes (0..{scores.shape[1] - 1}): pass a model made for this data set")


class _Evaluation:
    """The state of one evaluation: settings, tallies, resume state."""

    def __init__(self, model: nn.Module, data: Any, attacks: Sequence[Any] | None, eps: Sequence[float] | None,
                 opts: EvalOptions):
        self.opts = opts
        self.device = torch.device(opts.device)
        self.model = as_model(model).to(self.device).eval()
        self.source = as_source(data, bounds=opts.bounds).take(opts.limit)
        if len(self.source) == 0:
            raise DataError(f"data set '{self.source.name}' has no examples: pass data holding at least one")
        if isinstance(eps, (int, float, str)):  # one eps, not a grid
            eps = [eps]
        grid = list(eps) if eps is not None else list(self.source.default_eps)
        if not grid:
            raise ParameterError("no eps given and the data set has no default grid: pass --eps")
        self.threats = [ThreatModel(norm=opts.norm, eps=e, bounds=self.source.bounds, targeted=opts.targeted)
                        for e in grid]
        self.specs = resolve_attacks(attacks, opts.params)
        for s in self.specs:
            s.attack.check_threat(self.threats[0], torch.zeros(1) if opts.targeted else None)
        self.engine = Engine(self.threats, seed=opts.seed, strict=opts.strict)
        self.worst = WorstCase(self.specs, self.threats) if opts.worst_case else None
        self.rank, self.world = distributed.rank_and_world()
        self.config = {"attacks": [s.name for s in self.specs], "params": [s.params for s in self.specs],
                       "eps": grid, "norm": opts.norm, "targeted": opts.targeted, "target": opts.target,
                       "batch_size": opts.batch_size, "examples": len(self.source), "seed": opts.seed,
                       "label_leaks": opts.label_leaks, "worst_case": opts.worst_case, "rank": self.rank,
                       "world": self.world}
        self.tallies = {_key(i, j): RunTally() for i in range(len(self.specs)) for j in range(len(grid))}
        self.clean = RunTally()
        self.violations: list[Violation] = []
        self.done: set[int] = set()
        self.classes: int | None = None  # classes the model scores (from the first batch)
        self.state_file = Path(opts.state_path) if opts.state_path is not None else None
        self._load_state()

    def check_model_fits(self) -> None:
        """Refuse inputs of a shape the model cannot take, naming both shapes (one example's forward)."""
        x0, y0 = self.source.batch(0, 1)
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
        if self.state_file is None or not self.state_file.is_file():
            return
        state = json.loads(self.state_file.read_text())
        if state.get("config") != self.config:
            return
        self.tallies = {k: RunTally.from_state(v) for k, v in state["tallies"].items()}
        self.clean = RunTally.from_state(state["clean"])
        if self.worst is not None:
            self.worst.rows = {k: RunTally.from_state(v) for k, v in state["worst_case"].items()}
        self.violations = [Violation(**v) for v in state["violations"]]
        self.done = set(state["done"])
        self.classes = state.get("classes")

    def _save_state(self) -> None:
        if self.state_file is None:
            return
        atomic_write_text(self.state_file, json.dumps({
            "config": self.config, "tallies": {k: v.to_state() for k, v in self.tallies.items()},
            "clean": self.clean.to_state(), "violations": [v.__dict__ for v in self.violations],
            "worst_case": {k: v.to_state() for k, v in self.worst.rows.items()} if self.worst else None,
            "done": sorted(self.done), "classes": self.classes}))

    def starts(self) -> list[int]:
        """This process's batches (first example of each), a strided share of all."""
        size = self.opts.batch_size
        return [s for k, s in enumerate(range(0, len(self.source), size)) if k % self.world == self.rank]

    def batch(self, start: int) -> None:
        """Evaluate one batch and fold it into the tallies."""
        o = self.opts
        x, y = self.source.batch(start, min(start + o.batch_size, len(self.source)))
        x, y = x.to(self.device), y.to(self.device)
        clean_scores, clean_pred, clean_ok, clean_top5 = classify(self.model, x, y)
        self.classes = int(clean_scores.shape[1])
        check_labels(clean_scores, y, self.source.name)
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
                self._count(self.tallies[_key(i, j)], rec, twin, x, y, clean_ok, tgt)
        self.done.add(start)
        self._save_state()

    def _count(self, tally: RunTally, rec: Record, twin: Record | None, x: torch.Tensor, y: torch.Tensor,
               clean_ok: torch.Tensor, tgt: torch.Tensor | None) -> None:
        n = int(y.shape[0])
        tally.add(seconds=rec.seconds, gradient_evaluations=rec.gradient_evaluations * n,
                  forward_queries=rec.forward_queries * n, shared=int(rec.shared))
        if rec.refusal is not None or rec.x_adv is None:
            if rec.refusal is not None:
                self.violations.append(rec.refusal)
                tally.add(violations=rec.refusal.examples, rejected_batches=1, rejected_examples=n,
                          failed_batches=int(rec.refusal.reason != "threat"))
            return
        _, adv_pred, adv_ok, adv_top5 = classify(self.model, rec.x_adv, y)
        tally.add(examples=n, clean_correct=int(clean_ok.sum()), top1=int(adv_ok.sum()), top5=int(adv_top5.sum()),
                  flipped=int((clean_ok & ~adv_ok).sum()),
                  hit_target=int((adv_pred == tgt).sum()) if tgt is not None else 0)
        tally.max_perturbation = max(tally.max_perturbation, rec.audit.max_perturbation if rec.audit else 0.0)
        if twin is not None and twin.x_adv is not None:
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

    def run_entry(self, spec: AttackSpec, threat: ThreatModel, t: RunTally) -> dict[str, Any]:
        """One entry of the results document's ``runs``."""
        top1, clean_top1 = ratio(t.top1, t.examples), ratio(t.clean_correct, t.examples)
        uses_label = bool(spec.attack.uses_true_label)
        return {
            "attack": spec.name, "eps": threat.eps, "norm": threat.norm, "targeted": self.opts.targeted,
            "params": spec.params, "top1": top1, "top5": ratio(t.top5, t.examples) if self.reports_top5() else None,
            "success_rate": ratio(t.hit_target, t.examples) if self.opts.targeted else ratio(t.flipped,
                                                                                             t.clean_correct),
            "accuracy_ratio": ratio(top1, clean_top1) if top1 is not None and clean_top1 else None,
            "label_leaks": t.label_leaks if (t.leak_measured and uses_label) else None,
            "max_perturbation": t.max_perturbation, "violations": t.violations,
            "gradient_evaluations": ratio(t.gradient_evaluations, self.clean.examples),
            "forward_queries": ratio(t.forward_queries, self.clean.examples),
            "seconds": t.seconds, "examples": t.examples, "rejected_batches": t.rejected_batches,
            "rejected_examples": t.rejected_examples, "failed": t.failed_batches > 0,
            "uses_true_label": uses_label, "gradient_shared_across_eps": t.shared > 0,
        }

    def result(self) -> EvalResult:
        """The :class:`EvalResult` of the tallies."""
        runs = [self.run_entry(spec, threat, self.tallies[_key(i, j)])
                for i, spec in enumerate(self.specs) for j, threat in enumerate(self.threats)]
        extra: dict[str, Any] = {}
        if self.worst is not None:
            for r, (i, j) in zip(runs, [(i, j) for i in range(len(self.specs)) for j in range(len(self.threats))]):
                r.update(self.worst.run_entry(i, j, self.tallies))
            extra["worst_case"] = self.worst.entries(self.tallies)
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
    if run.state_file is not None and run.rank == 0 and run.state_file.exists():
        run.state_file.unlink()
    return result
