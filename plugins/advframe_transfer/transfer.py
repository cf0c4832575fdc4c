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

from advframe import plugins
from advframe.engine import Engine, Record, Violation
from advframe.errors import ParameterError
from advframe.metrics import RunTally, ratio, topk_correct
from advframe.model import model_label
from advframe.options import RunOptions, default_attacks
from advframe.prepared import PreparedRun
from advframe.progress import emit

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


@dataclass(frozen=True)
class TransferOptions(RunOptions):
    """Settings of :func:`transfer`, beyond :class:`RunOptions`.

    Attributes:
        source_names: names to report for the sources (default: each model's name in evaluation
            results, e.g. ``std1 (mnist_cnn)`` for a checkpoint, so that reports join the two).
        target_names: names to report for the targets.
    """

    source_names: Sequence[str] | None = None
    target_names: Sequence[str] | None = None


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


def _names(models: list[nn.Module], given: Sequence[str] | None, role: str) -> list[str]:
    """One distinct name per model: the given ones, else each model's name in evaluation results."""
    if given is not None and len(given) != len(models):
        raise ParameterError(f"{len(given)} {role}_names for {len(models)} {role} models: give one name each")
    return _unique([name or model_label(m) for m, name in zip(models, given or [None] * len(models))])


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


class _Transfer(PreparedRun):
    """The state of one transfer run: a prepared run over the sources and targets, and its tallies."""

    early_exit = False  # the attacks' goal is met on the source; the targets are what is measured

    def __init__(self, sources: Sequence[nn.Module], targets: Sequence[nn.Module], data: Any,
                 attacks: Sequence[Any] | None, eps: Sequence[float] | None, opts: TransferOptions):
        if not sources or not targets:
            raise ParameterError("transfer needs at least one source and one target model (--source-model, --target-model)")
        super().__init__([*sources, *targets], data, default_transfer_attacks() if attacks is None else attacks,
                         eps, opts)
        self.opts: TransferOptions = opts
        self.src, self.tgt = self.models[:len(sources)], self.models[len(sources):]
        self.s_names = _names(self.src, opts.source_names, "source")
        self.t_names = _names(self.tgt, opts.target_names, "target")
        self.by_id = {id(m): m for m in self.src + self.tgt}
        self.clean_counts = {key: dict.fromkeys(KS, 0) for key in self.by_id}
        self.cells = {(si, ai, j, ti): _Counts() for si in range(len(self.src)) for ai in range(len(self.specs))
                      for j in range(len(self.grid)) for ti in range(len(self.tgt))}
        self.audits = {(si, ai, j): RunTally() for si in range(len(self.src)) for ai in range(len(self.specs))
                       for j in range(len(self.grid))}
        self.engines = [Engine(self.threats, seed=opts.seed, strict=opts.strict, context=f"source {name}: ")
                        for name in self.s_names]

    def _correct(self, keys: Any, x: torch.Tensor, y: torch.Tensor) -> dict[int, dict[str, torch.Tensor]]:
        out = {}
        with torch.no_grad():
            for key in keys:
                scores = self.by_id[key].scores(self.by_id[key](x))
                out[key] = {k: topk_correct(scores, y, kk) for k, kk in KS.items()}
        return out

    def batch(self, start: int, bi: int, total: int) -> int:
        """Attack one batch on every source and classify it with every target; its size."""
        o = self.opts
        x, y = self.examples(start)
        n = int(y.shape[0])
        clean_ok = self._correct(self.by_id, x, y)
        for key in self.by_id:
            for k in KS:
                self.clean_counts[key][k] += int(clean_ok[key][k].sum())
        for si, s_model in enumerate(self.src):
            for ai, spec in enumerate(self.specs):
                t0 = time.perf_counter()
                records = self.engines[si].craft(s_model, x, y, spec, attack_index=ai, start=start)
                for rec in records:
                    self._count(si, ai, rec, s_model, y, n, clean_ok)
                emit(o.progress, f"transfer {self.s_names[si]} {spec.name}", bi + 1, total,
                     seconds=time.perf_counter() - t0)
        return n

    def _count(self, si: int, ai: int, rec: Record, s_model: Any, y: torch.Tensor, n: int,
               clean_ok: dict[int, dict[str, torch.Tensor]]) -> None:
        run = self.audits[(si, ai, rec.eps_index)]
        run.add(seconds=rec.seconds, gradient_evaluations=rec.gradient_evaluations * n,
                forward_queries=rec.forward_queries * n)
        if not self.book(run, rec, n):
            return
        run.examples += n
        adv_ok = self._correct({id(s_model)} | {id(t) for t in self.tgt}, rec.x_adv, y)
        for ti, t_model in enumerate(self.tgt):
            c = self.cells[(si, ai, rec.eps_index, ti)]
            c.examples += n
            for k in KS:
                success = clean_ok[id(s_model)][k] & ~adv_ok[id(s_model)][k]
                wrong = ~adv_ok[id(t_model)][k]
                c.source_success[k] += int(success.sum())
                c.transferred[k] += int((success & wrong).sum())
                c.errors[k] += int(wrong.sum())

    def result(self) -> TransferResult:
        """The :class:`TransferResult` of the counts."""
        examples = len(self.source)
        clean = {}
        for m, name in list(zip(self.src, self.s_names)) + list(zip(self.tgt, self.t_names)):
            clean[name] = {k: ratio(v, examples) or 0.0 for k, v in self.clean_counts[id(m)].items()}
        runs = []
        for (si, ai, j, ti), c in self.cells.items():
            a = self.audits[(si, ai, j)]
            err = {k: ratio(c.errors[k], c.examples) for k in KS}
            runs.append({
                "source": self.s_names[si], "target": self.t_names[ti], "attack": self.specs[ai].name,
                "eps": self.grid[j], "norm": self.opts.norm, "params": self.specs[ai].params,
                "white_box": self.src[si] is self.tgt[ti], "examples": c.examples,
                "source_successes": dict(c.source_success), "transferred": dict(c.transferred),
                "errors": dict(c.errors),
                "transfer_rate": {k: ratio(c.transferred[k], c.source_success[k]) for k in KS},
                "error_rate": err, "accuracy": {k: None if e is None else 1.0 - e for k, e in err.items()},
                "violations": a.violations, "rejected_batches": a.rejected_batches,
                "max_perturbation": a.max_perturbation, "seconds": a.seconds,
                "gradient_evaluations": ratio(a.gradient_evaluations, examples),
                "forward_queries": ratio(a.forward_queries, examples),
            })
        return TransferResult(dataset=self.source.name, split=self.source.split, examples=examples,
                              norm=self.opts.norm, sources=self.s_names, targets=self.t_names, clean=clean,
                              runs=runs, violations=self.violations,
                              meta={"seed": self.opts.seed, "batch_size": self.opts.batch_size,
                                    "bounds": list(self.source.bounds), "eps": self.grid,
                                    "attacks": [s.name for s in self.specs]})


def default_transfer_attacks() -> list[str]:
    """The attacks of the suite a plugin declared the transfer default, else the default attack."""
    suite = plugins.registry().default("suites", "transfer")
    if suite is None:
        return default_attacks()
    return [name for name, _ in plugins.registry().get("suites", suite).factory.attacks]


def transfer(sources: Sequence[nn.Module], targets: Sequence[nn.Module], data: Any,
             attacks: Sequence[Any] | None = None, eps: Sequence[float] | None = None, **options: Any
             ) -> TransferResult:
    """Make adversarial examples on every source and classify them with every target.

    Untargeted attacks only (iter_ll picks its own least-likely class on the source, as in
    Kurakin et al. 2017, §2.2). One model object may appear both as a source and as a
    target: its diagonal cell is the white-box result.

    Args:
        sources: models the attacks see (Model objects or plain logits ``nn.Module``).
        targets: models that classify the adversarial examples.
        data: a :class:`~advframe.dataset.LabeledData`, an ``(x, y)`` pair or a map-style dataset.
        attacks: attack names or Attack objects (default: the attacks of the default
            suite a plugin declares, else the default attack).
        eps: the eps grid in the models' input scale (default: the data set's grid).
        **options: the settings of :class:`TransferOptions`.

    Returns:
        A :class:`TransferResult`; rates are fractions in [0, 1], ``None`` where the
        denominator is 0 (e.g. a source that no attack fooled).

    Raises:
        ParameterError: no source, no target, no eps, bad batch size or an unknown setting.
    """
    run = _Transfer(sources, targets, data, attacks, eps, TransferOptions.of(options))
    starts = list(range(0, len(run.source), run.opts.batch_size))
    for bi, start in enumerate(starts):
        n = run.batch(start, bi, len(starts))
        emit(run.opts.progress, "transfer", bi + 1, len(starts), examples=start + n)
    return run.result()
