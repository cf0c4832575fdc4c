"""Black-box transfer evaluation: adversarial examples made on sources, classified by targets.

Follows Kurakin, Goodfellow & Bengio, *Adversarial Machine Learning at Scale* (ICLR 2017):

* a *candidate adversarial image* is "the output of any procedure intended to produce an
  approximate worst-case modification of the clean image ... not necessarily misclassified"
  (§2, notation); a *misclassified adversarial image* is a candidate the network gets
  wrong, of interest "only ... when the corresponding clean image is correctly classified";
* the **transfer rate** (§4.4, Table 4): among the examples the source classifies
  correctly when clean and wrongly when attacked, the fraction the target misclassifies
  ("equivalent to the error rate in an attack scenario where the attacker prefilters
  their adversarial examples"); the diagonal (target = source) is 1 by definition;
* the **error rate** (Appendix C, Table 6): the fraction of *all* candidates (one per
  example, whether or not the clean image or the attack succeeded on the source) that
  the target misclassifies.

Both are given in top-1 and top-5 (an example is "misclassified" in top-k when its label
is not among the k highest scores). Adversarial examples are made once per source,
attack and eps, batch by batch, and every batch is audited against its threat model: a
batch that leaves the ball or the bounds is refused (counted as violations, never
classified), as in :func:`advframe.evaluate`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from advframe.data_source import BatchSource, as_source
from advframe.errors import ParameterError
from advframe.evaluation import Violation, _attack_grid, _resolve_attacks, audit_or_refuse
from advframe.metrics import RunTally, ratio, topk_correct
from advframe.model import as_model, model_config
from advframe.progress import ProgressCallback, emit
from advframe.threat import ThreatModel

SCHEMA = "advframe.transfer/1"
KS = {"top1": 1, "top5": 5}
DEFINITIONS = {
    "candidate": "an adversarial image made by the attack on the source for an example of the data, whether or "
                 "not it is misclassified (Kurakin et al. 2017, Sec. 2)",
    "transfer_rate": "among the candidates whose clean image the source classifies correctly and whose adversarial "
                     "image it misclassifies, the fraction the target misclassifies (Kurakin et al. 2017, "
                     "Sec. 4.4, Table 4)",
    "error_rate": "the fraction of all candidates the target misclassifies (Kurakin et al. 2017, Appendix C, "
                  "Table 6)",
    "topk": "top-k: misclassified means the label is not among the k highest scores; the source's success is "
            "measured with the same k",
}


@dataclass
class _Counts:
    """Sums for one (source, attack, eps, target) cell, per k."""

    examples: int = 0
    source_success: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KS, 0))
    transferred: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KS, 0))
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KS, 0))


@dataclass
class TransferResult:
    """What :func:`transfer` returns; :meth:`to_dict` gives the ``advframe.transfer/1`` document."""

    dataset: str
    split: str
    examples: int
    norm: str
    sources: list[str]
    targets: list[str]
    clean: dict[str, dict[str, float]]
    runs: list[dict[str, Any]]
    violations: list[Violation] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def matrix(self, attack: str, eps: float, metric: str = "transfer_rate", k: str = "top1"
               ) -> list[list[float | None]]:
        """Rows = sources, columns = targets, for one attack and eps (Kurakin Tables 4 and 6)."""
        cells = {(r["source"], r["target"]): r[metric][k] for r in self.runs
                 if r["attack"] == attack and abs(r["eps"] - eps) < 1e-12}
        return [[cells.get((s, t)) for t in self.targets] for s in self.sources]

    def grid(self) -> list[tuple[str, float]]:
        """The (attack, eps) pairs, in run order."""
        out: list[tuple[str, float]] = []
        for r in self.runs:
            if (r["attack"], r["eps"]) not in out:
                out.append((r["attack"], r["eps"]))
        return out

    def to_dict(self) -> dict[str, Any]:
        """The results document (schema ``advframe.transfer/1``)."""
        matrices = [{"attack": a, "eps": e,
                     **{m: {k: self.matrix(a, e, m, k) for k in KS} for m in ("transfer_rate", "error_rate")}}
                    for a, e in self.grid()]
        return {"schema": SCHEMA, "dataset": self.dataset, "split": self.split, "examples": self.examples,
                "norm": self.norm, "sources": self.sources, "targets": self.targets, "clean": self.clean,
                "runs": self.runs, "matrices": matrices, "definitions": DEFINITIONS,
                "violations": [v.__dict__ for v in self.violations], **self.meta}


def _name(model: nn.Module, given: str | None, index: int, role: str) -> str:
    return given or model_config(model)[0] or f"{role}{index}"


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


def transfer(sources: Sequence[nn.Module], targets: Sequence[nn.Module], data: Any,
             attacks: Sequence[Any] = ("fgsm", "iter_basic", "iter_ll"), eps: Sequence[float] | None = None, *,
             norm: str = "linf", params: dict[str, Any] | None = None, batch_size: int = 250,
             limit: int | None = None, device: str | torch.device = "cpu", seed: int = 0,
             bounds: tuple[float, float] | None = None, progress: ProgressCallback = None, strict: bool = False,
             source_names: Sequence[str] | None = None, target_names: Sequence[str] | None = None
             ) -> TransferResult:
    """Make adversarial examples on every source and classify them with every target.

    Untargeted attacks only (iter_ll picks its own least-likely class on the source, as in
    Kurakin et al. 2017, §2.2). One model object may appear both as a source and as a
    target: its diagonal cell is the white-box result.

    Args:
        sources: models the attacks see (Model objects or plain logits ``nn.Module``).
        targets: models that classify the adversarial examples.
        data: a :class:`~advframe.dataset.LabeledData`, an ``(x, y)`` pair or a map-style dataset.
        attacks: attack names or Attack objects.
        eps: the eps grid in the models' input scale (default: the data set's grid).
        norm: ``"linf"`` or ``"l2"``.
        params: hyper-parameters for every attack, or ``{attack_name: {...}}``.
        batch_size: examples per batch.
        limit: use only the first ``limit`` examples.
        device: where to run.
        seed: seeds random starts and noise (per batch position, as in evaluate).
        bounds: valid input range (default: the data set's, else (0, 1)).
        progress: callback receiving :class:`~advframe.progress.ProgressEvent`.
        strict: raise :class:`ThreatViolation` on the first refused batch.
        source_names: names to report for the sources (default: registry or ``source<i>``).
        target_names: names to report for the targets.

    Returns:
        A :class:`TransferResult`; rates are fractions in [0, 1], ``None`` where the
        denominator is 0 (e.g. a source that no attack fooled).

    Raises:
        ParameterError: no source, no target, no eps, bad batch size or a targeted threat.
    """
    if not sources or not targets:
        raise ParameterError("transfer needs at least one source and one target model (--source, --target)")
    if batch_size < 1:
        raise ParameterError(f"batch size {batch_size} is invalid: use a positive integer")
    device = torch.device(device)
    src = [as_model(m).to(device).eval() for m in sources]
    tgt = [as_model(m).to(device).eval() for m in targets]
    s_names = _unique([_name(m, (source_names or [None] * len(src))[i], i, "source") for i, m in enumerate(src)])
    t_names = _unique([_name(m, (target_names or [None] * len(tgt))[i], i, "target") for i, m in enumerate(tgt)])
    source: BatchSource = as_source(data, bounds=bounds).take(limit)
    grid = list(eps) if eps is not None else list(source.default_eps)
    if not grid:
        raise ParameterError("no eps given and the data set has no default grid: pass --eps")
    threats = [ThreatModel(norm=norm, eps=e, bounds=source.bounds) for e in grid]
    specs = _resolve_attacks(attacks, params)
    for s in specs:
        if hasattr(s.attack, "check_threat"):
            s.attack.check_threat(threats[0], None)

    models = {id(m): m for m in src + tgt}
    clean_counts = {key: dict.fromkeys(KS, 0) for key in models}
    cells = {(si, ai, j, ti): _Counts() for si in range(len(src)) for ai in range(len(specs))
             for j in range(len(grid)) for ti in range(len(tgt))}
    audits = {(si, ai, j): RunTally() for si in range(len(src)) for ai in range(len(specs))
              for j in range(len(grid))}
    violations: list[Violation] = []
    starts = list(range(0, len(source), batch_size))
    for bi, start in enumerate(starts):
        x, y = source.batch(start, min(start + batch_size, len(source)))
        x, y = x.to(device), y.to(device)
        n = int(y.shape[0])
        clean_ok: dict[int, dict[str, torch.Tensor]] = {}
        with torch.no_grad():
            for key, m in models.items():
                scores = m.scores(m(x))
                clean_ok[key] = {k: topk_correct(scores, y, kk) for k, kk in KS.items()}
                for k in KS:
                    clean_counts[key][k] += int(clean_ok[key][k].sum())
        for si, s_model in enumerate(src):
            for ai, spec in enumerate(specs):
                t0 = time.perf_counter()
                outs = _attack_grid(spec.attack, s_model, x, y, threats, None, device, seed, start, ai)
                for j, (threat, (x_adv, grads, seconds)) in enumerate(zip(threats, outs)):
                    run = audits[(si, ai, j)]
                    run.seconds += seconds
                    run.gradient_evaluations += (grads or 0) * n
                    report = audit_or_refuse(threat, x_adv, x, run, spec.name, start, violations, strict,
                                             context=f"source {s_names[si]}: ")
                    if report is None:
                        continue
                    run.examples += n
                    run.max_perturbation = max(run.max_perturbation, report.max_perturbation)
                    adv_ok: dict[int, dict[str, torch.Tensor]] = {}
                    with torch.no_grad():
                        for key in {id(s_model)} | {id(t) for t in tgt}:
                            scores = models[key].scores(models[key](x_adv))
                            adv_ok[key] = {k: topk_correct(scores, y, kk) for k, kk in KS.items()}
                    for ti, t_model in enumerate(tgt):
                        c = cells[(si, ai, j, ti)]
                        c.examples += n
                        for k in KS:
                            success = clean_ok[id(s_model)][k] & ~adv_ok[id(s_model)][k]
                            wrong = ~adv_ok[id(t_model)][k]
                            c.source_success[k] += int(success.sum())
                            c.transferred[k] += int((success & wrong).sum())
                            c.errors[k] += int(wrong.sum())
                emit(progress, f"transfer {s_names[si]} {spec.name}", bi + 1, len(starts),
                     seconds=time.perf_counter() - t0)
        emit(progress, "transfer", bi + 1, len(starts), examples=start + n)

    examples = len(source)
    clean = {}
    for m, name in list(zip(src, s_names)) + list(zip(tgt, t_names)):
        clean[name] = {k: ratio(v, examples) or 0.0 for k, v in clean_counts[id(m)].items()}
    runs = []
    for (si, ai, j, ti), c in cells.items():
        a = audits[(si, ai, j)]
        spec = specs[ai]
        err = {k: ratio(c.errors[k], c.examples) for k in KS}
        runs.append({
            "source": s_names[si], "target": t_names[ti], "attack": spec.name, "eps": grid[j], "norm": norm,
            "params": spec.params, "white_box": src[si] is tgt[ti], "examples": c.examples,
            "source_successes": dict(c.source_success), "transferred": dict(c.transferred),
            "errors": dict(c.errors),
            "transfer_rate": {k: ratio(c.transferred[k], c.source_success[k]) for k in KS},
            "error_rate": err, "accuracy": {k: None if e is None else 1.0 - e for k, e in err.items()},
            "violations": a.violations, "rejected_batches": a.rejected_batches,
            "max_perturbation": a.max_perturbation, "seconds": a.seconds,
            "gradient_evaluations": ratio(a.gradient_evaluations, examples),
        })
    return TransferResult(dataset=source.name, split=source.split, examples=examples, norm=norm, sources=s_names,
                          targets=t_names, clean=clean, runs=runs, violations=violations,
                          meta={"seed": seed, "batch_size": batch_size, "bounds": list(source.bounds),
                                "eps": grid, "attacks": [s.name for s in specs]})
