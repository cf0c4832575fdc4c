"""Streaming evaluation of a model under attacks over an eps grid.

For each batch the clean predictions are computed once, then each attack makes
adversarial examples for every eps of the grid. Every adversarial batch is audited
against its threat model; a batch that leaves the ball or the bounds is refused
(reported as violations, never counted). Metrics follow Kurakin et al. 2017: top-1,
top-5, success rate, accuracy ratio adv/clean (§4.3) and label leaking (§4.2).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advframe import distributed
from advframe.attack import random_target
from advframe.checkpoint import atomic_write_text
from advframe.data_source import BatchSource, as_source
from advframe.errors import ParameterError, ThreatViolation
from advframe.metrics import RunTally, ratio, topk_correct
from advframe.model import as_model, model_config
from advframe.progress import ProgressCallback, emit
from advframe.threat import ThreatModel

SCHEMA = "advframe.eval/1"
TARGET_MODES = ("random", "least_likely")


@dataclass
class AttackSpec:
    """An attack of the evaluation with its name and constructed object."""

    name: str
    attack: Any

    @property
    def params(self) -> dict[str, Any]:
        return dict(getattr(self.attack, "params", {}))


@dataclass
class Violation:
    """One refused adversarial batch."""

    attack: str
    eps: float
    batch_start: int
    examples: int
    max_excess: float

    def describe(self) -> str:
        return (f"attack '{self.attack}' at eps={self.eps:g} left the threat model on batch starting at "
                f"example {self.batch_start}: {self.examples} example(s), excess {self.max_excess:.3g}; batch not counted")


@dataclass
class EvalResult:
    """What :func:`evaluate` returns; :meth:`to_dict` gives the results document."""

    model: str
    dataset: str
    split: str
    examples: int
    clean_top1: float
    clean_top5: float
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


def _resolve_attacks(attacks: Sequence[Any], params: dict[str, Any] | None) -> list[AttackSpec]:
    from advframe.api import get_attack

    specs = []
    for a in attacks:
        if isinstance(a, str):
            p = {}
            if params:
                # either {"steps": 10} for every attack or {"pgd": {"steps": 10}}
                p = params.get(a, {}) if any(isinstance(v, dict) for v in params.values()) else dict(params)
            specs.append(AttackSpec(a, get_attack(a, **p)))
        else:
            specs.append(AttackSpec(getattr(a, "name", type(a).__name__), a))
    if not specs:
        raise ParameterError("no attack given: pass at least one --attack NAME (see 'advframe list attacks')")
    return specs


def _targets(mode: str, y: torch.Tensor, clean_scores: torch.Tensor, num_classes: int, seed: int,
             start: int) -> torch.Tensor:
    if mode == "least_likely":
        return clean_scores.argmin(dim=1)
    g = torch.Generator().manual_seed(seed * 7919 + start)
    return random_target(y.cpu(), num_classes, g).to(y.device)


def _attack_grid(attack: Any, model: Any, x: torch.Tensor, labels: torch.Tensor, threats: list[ThreatModel],
                 tgt: torch.Tensor | None, device: torch.device, seed: int, start: int, index: int
                 ) -> list[tuple[torch.Tensor, int | None, float]]:
    """``(x_adv, gradient evaluations, seconds)`` for each threat of the grid.

    One-step attacks share one gradient over the grid (attributed to the first eps);
    every other attack runs once per eps. Seeds depend on the batch's position only.
    """
    def counted(fn: Any) -> tuple[Any, int | None, float]:
        if hasattr(attack, "reset_counter"):
            attack.reset_counter()
        t0 = time.perf_counter()
        out = fn()
        distributed.synchronize(device)
        return out, getattr(attack, "gradient_evaluations", None), time.perf_counter() - t0

    if getattr(attack, "one_step", False) and hasattr(attack, "perturb_grid"):
        torch.manual_seed(seed * 1_000_003 + start * 131 + index)
        advs, grads, seconds = counted(lambda: attack.perturb_grid(model, x, labels, threats, tgt))
        return [(a, grads if j == 0 else 0, seconds / len(threats)) for j, a in enumerate(advs)]
    out = []
    for j, threat in enumerate(threats):
        torch.manual_seed(seed * 1_000_003 + start * 131 + index * 17 + j)
        out.append(counted(lambda t=threat: attack(model, x, labels, t, tgt)))
    return out


def audit_or_refuse(threat: ThreatModel, x_adv: torch.Tensor, x: torch.Tensor, tally: RunTally, attack: str,
                    start: int, violations: list[Violation], strict: bool, context: str = "") -> Any:
    """Audit one adversarial batch; record and refuse it when it leaves the threat model.

    Returns:
        The :class:`~advframe.threat.AuditReport` when the batch may be counted, else None
        (the refusal is added to ``violations`` and ``tally``).

    Raises:
        ThreatViolation: in ``strict`` mode, for a batch that leaves the threat model.
    """
    report = threat.audit(x_adv, x)
    if report.ok:
        return report
    v = Violation(attack, threat.eps, start, report.violations, report.max_excess)
    if strict:
        raise ThreatViolation(f"{context}{v.describe()}")
    violations.append(v)
    tally.violations += report.violations
    tally.rejected_batches += 1
    tally.rejected_examples += int(x.shape[0])
    return None


def _classify(model: Any, x: torch.Tensor, y: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(scores, predictions, top-1 correct, top-5 correct)`` by the model's own decision rule."""
    with torch.no_grad():
        out = model(x)
        scores, pred = model.scores(out), model.predict(out)
    return scores, pred, pred == y, topk_correct(scores, y, 5)


def _run_key(i: int, j: int) -> str:
    return f"{i}:{j}"


def evaluate(model: nn.Module, data: Any, attacks: Sequence[Any] = ("iter_ll",),
             eps: Sequence[float] | None = None, *, norm: str = "linf", params: dict[str, Any] | None = None,
             targeted: bool = False, target: str = "random", batch_size: int = 250, limit: int | None = None,
             device: str | torch.device = "cpu", seed: int = 0, label_leaks: bool = True,
             bounds: tuple[float, float] | None = None, progress: ProgressCallback = None,
             strict: bool = False, state_path: str | os.PathLike[str] | None = None,
             model_name: str | None = None) -> EvalResult:
    """Evaluate ``model`` on ``data`` under each attack at each eps.

    Args:
        model: a Model, or a plain ``nn.Module`` returning logits (wrapped with
            cross-entropy and arg-max).
        data: a :class:`~advframe.dataset.LabeledData`, an ``(x, y)`` pair of tensors,
            or a map-style torch dataset of ``(x, y)`` items.
        attacks: attack names or Attack objects.
        eps: the eps grid in the model's input scale (default: the data set's grid).
        norm: ``"linf"`` or ``"l2"``.
        params: hyper-parameters for every attack, or ``{attack_name: {...}}``.
        targeted: run targeted attacks; targets from ``target``.
        target: ``"random"`` (seeded, a class other than the label) or ``"least_likely"``.
        batch_size: examples per batch.
        limit: evaluate only the first ``limit`` examples.
        device: where to run.
        seed: seeds random starts, random targets and noise (per batch, so results
            do not depend on how batches are spread over processes).
        label_leaks: for untargeted attacks that read the true label, also run the
            predicted-label twin and count label leaks (Kurakin §4.2).
        bounds: valid input range (default: the data set's, else (0, 1)).
        progress: callback receiving :class:`~advframe.progress.ProgressEvent`.
        strict: raise :class:`ThreatViolation` on the first refused batch.
        state_path: a JSON file where partial sums are saved atomically after every
            batch; an interrupted evaluation with the same settings resumes from it.
        model_name: the name to report (default: the registry name or class name).

    Returns:
        An :class:`EvalResult`.
    """
    if target not in TARGET_MODES:
        raise ParameterError(f"target mode '{target}' is unknown: use one of {', '.join(TARGET_MODES)}")
    if batch_size < 1:
        raise ParameterError(f"batch size {batch_size} is invalid: use a positive integer")
    device = torch.device(device)
    model = as_model(model).to(device).eval()
    source: BatchSource = as_source(data, bounds=bounds).take(limit)
    grid = list(eps) if eps is not None else list(source.default_eps)
    if not grid:
        raise ParameterError("no eps given and the data set has no default grid: pass --eps")
    threats = [ThreatModel(norm=norm, eps=e, bounds=source.bounds, targeted=targeted) for e in grid]
    specs = _resolve_attacks(attacks, params)
    for s in specs:
        if hasattr(s.attack, "check_threat"):
            s.attack.check_threat(threats[0], torch.zeros(1) if targeted else None)

    rank, world = distributed.rank_and_world()
    config = {"attacks": [s.name for s in specs], "params": [s.params for s in specs], "eps": grid, "norm": norm,
              "targeted": targeted, "target": target, "batch_size": batch_size, "examples": len(source),
              "seed": seed, "label_leaks": label_leaks, "rank": rank, "world": world}
    tallies = {_run_key(i, j): RunTally() for i in range(len(specs)) for j in range(len(grid))}
    clean = RunTally()
    violations: list[Violation] = []
    done_batches: set[int] = set()
    state_file = Path(state_path) if state_path is not None else None
    if state_file is not None and state_file.is_file():
        state = json.loads(state_file.read_text())
        if state.get("config") == config:
            tallies = {k: RunTally.from_state(v) for k, v in state["tallies"].items()}
            clean = RunTally.from_state(state["clean"])
            violations = [Violation(**v) for v in state["violations"]]
            done_batches = set(state["done"])

    starts = [s for k, s in enumerate(range(0, len(source), batch_size)) if k % world == rank]
    total_batches = len(starts)
    for bi, start in enumerate(starts):
        if start in done_batches:
            continue
        x, y = source.batch(start, min(start + batch_size, len(source)))
        x, y = x.to(device), y.to(device)
        n = int(y.shape[0])
        clean_scores, clean_pred, clean_ok, clean_top5 = _classify(model, x, y)
        clean.examples += n
        clean.top1 += int(clean_ok.sum())
        clean.top5 += int(clean_top5.sum())
        tgt = _targets(target, y, clean_scores, clean_scores.shape[1], seed, start) if targeted else None
        for i, spec in enumerate(specs):
            attack = spec.attack
            outs = _attack_grid(attack, model, x, y, threats, tgt, device, seed, start, i)
            twins = None
            if label_leaks and not targeted and getattr(attack, "uses_true_label", False):
                twins = [o[0] for o in _attack_grid(attack, model, x, clean_pred, threats, None, device, seed, start, i)]
            for j, (threat, (x_adv, grads, seconds)) in enumerate(zip(threats, outs)):
                tally = tallies[_run_key(i, j)]
                tally.seconds += seconds
                tally.gradient_evaluations += (grads or 0) * n
                report = audit_or_refuse(threat, x_adv, x, tally, spec.name, start, violations, strict)
                if report is None:
                    continue
                _, adv_pred, adv_ok, adv_top5 = _classify(model, x_adv, y)
                tally.examples += n
                tally.clean_correct += int(clean_ok.sum())
                tally.top1 += int(adv_ok.sum())
                tally.top5 += int(adv_top5.sum())
                tally.flipped += int((clean_ok & ~adv_ok).sum())
                if tgt is not None:
                    tally.hit_target += int((adv_pred == tgt).sum())
                tally.max_perturbation = max(tally.max_perturbation, report.max_perturbation)
                if twins is not None:
                    twin = twins[j]
                    if threat.audit(twin, x).ok:
                        with torch.no_grad():
                            twin_ok = model.predict(model(twin)) == y
                        tally.label_leaks += int((adv_ok & ~twin_ok).sum())
                        tally.leak_measured += n
        done_batches.add(start)
        if state_file is not None:
            atomic_write_text(state_file, json.dumps({
                "config": config, "tallies": {k: v.to_state() for k, v in tallies.items()},
                "clean": clean.to_state(), "violations": [v.__dict__ for v in violations],
                "done": sorted(done_batches)}))
        emit(progress, "evaluate", bi + 1, total_batches, examples=clean.examples,
             clean_top1=ratio(clean.top1, clean.examples))

    if world > 1:
        clean = distributed.all_reduce_tally(clean, device)
        tallies = {k: distributed.all_reduce_tally(v, device) for k, v in tallies.items()}
        violations = distributed.all_gather_objects(violations)

    runs = []
    for i, spec in enumerate(specs):
        for j, threat in enumerate(threats):
            t = tallies[_run_key(i, j)]
            top1, clean_top1 = ratio(t.top1, t.examples), ratio(t.clean_correct, t.examples)
            uses_label = bool(getattr(spec.attack, "uses_true_label", False))
            runs.append({
                "attack": spec.name, "eps": threat.eps, "norm": threat.norm, "targeted": targeted,
                "params": spec.params, "top1": top1, "top5": ratio(t.top5, t.examples),
                "success_rate": ratio(t.hit_target, t.examples) if targeted else ratio(t.flipped, t.clean_correct),
                "accuracy_ratio": ratio(top1, clean_top1) if top1 is not None and clean_top1 else None,
                "label_leaks": t.label_leaks if (t.leak_measured and uses_label) else None,
                "max_perturbation": t.max_perturbation, "violations": t.violations,
                "gradient_evaluations": ratio(t.gradient_evaluations, clean.examples),
                "seconds": t.seconds, "examples": t.examples, "rejected_batches": t.rejected_batches,
                "uses_true_label": uses_label,
                "gradient_shared_across_eps": bool(getattr(spec.attack, "one_step", False)) and len(threats) > 1,
            })
    name = model_name or model_config(model)[0] or type(model).__name__
    result = EvalResult(model=name, dataset=source.name, split=source.split, examples=clean.examples,
                        clean_top1=ratio(clean.top1, clean.examples) or 0.0,
                        clean_top5=ratio(clean.top5, clean.examples) or 0.0,
                        runs=runs, violations=violations,
                        meta={"seed": seed, "batch_size": batch_size, "bounds": list(source.bounds),
                              "target_mode": target if targeted else None, "processes": world})
    if state_file is not None and rank == 0 and state_file.exists():
        state_file.unlink()
    return result
