"""The built-in checker: automatic checks for gradient masking and attack failure.

Registered as the checker ``honesty`` (:mod:`advframe.checks` runs it; ``advframe eval``
after the attacks unless ``--no-checks``). Each check yields ``pass``, ``warn`` or ``not_applicable`` with evidence (a sentence
with the numbers) and a source (a citation). Checks read the evaluation's runs where
those hold what they need; otherwise they run their own attacks, by registry name, on
a probe of the first ``subset`` (200) examples, and say so in the evidence. An attack
that no plugin registers makes the check that needs it ``not_applicable``.
Accuracies are compared with a one-sided two-proportion z-test at 99 %
(:mod:`advframe_checks.stats`).

The checks (docs/checks.md describes each with its threshold and source):

* ``eps_zero_clean``: an attack at eps = 0 gives exactly the clean accuracy.
* ``monotone_in_eps``: accuracy does not rise with eps beyond sampling noise.
* ``iterative_beats_one_step``: iter_basic >= fgsm and iter_ll >= step_ll in strength.
* ``unbounded_attack_wins``: eps = the whole input range drives top-1 to <= 5 %.
* ``whitebox_beats_noise``: the strongest white-box attack beats rand_sign.
* ``whitebox_beats_transfer``: ... and beats transfer from ``transfer_source``.
* ``gradient_health``: <= 5 % of examples with a zero or non-finite input gradient.
* ``deterministic_predictions``: two identical forward passes agree.
* ``label_leaking``: a one-step true-label attack does not raise accuracy above clean.
* ``blackbox_beats_whitebox``: no black-box attack beats the white-box ones (runs only).
* ``logits_not_probabilities``: the scores attacks read are not softmax probabilities.
* ``no_gradient_in_forward``: the forward pass calls no gradient or backward itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from advframe.checks import Check
from advframe_checks.base import Context
from advframe_checks.consistency import (eps_zero_clean, iterative_beats_one_step, label_leaking, monotone_in_eps,
                                         whitebox_beats_noise, whitebox_beats_transfer)
from advframe_checks.flags import blackbox_beats_whitebox, logits_not_probabilities, no_gradient_in_forward
from advframe_checks.gradients import deterministic_predictions, gradient_health, unbounded_attack_wins
from advframe_checks.probe import Probe
from advframe.data_source import as_source
from advframe.errors import ParameterError
from advframe.evaluation import RunRow
from advframe.model import as_model
from advframe.progress import ProgressCallback, emit

#: Every check, in the order reports list them.
CHECKS: dict[str, Callable[[Context], Check]] = {
    "eps_zero_clean": eps_zero_clean,
    "monotone_in_eps": monotone_in_eps,
    "iterative_beats_one_step": iterative_beats_one_step,
    "unbounded_attack_wins": unbounded_attack_wins,
    "whitebox_beats_noise": whitebox_beats_noise,
    "whitebox_beats_transfer": whitebox_beats_transfer,
    "gradient_health": gradient_health,
    "deterministic_predictions": deterministic_predictions,
    "label_leaking": label_leaking,
    "blackbox_beats_whitebox": blackbox_beats_whitebox,
    "logits_not_probabilities": logits_not_probabilities,
    "no_gradient_in_forward": no_gradient_in_forward,
}

DEFAULT_SUBSET = 200


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


@dataclass(frozen=True)
class CheckOptions:
    """Settings of :func:`run_checks`.

    Attributes:
        attacks: the evaluation's attack objects (a list or ``{name: attack}``); reused
            when a check re-runs one of them. Attacks named in the runs but not given
            here are rebuilt by registry name with the runs' parameters.
        transfer_source: a second model; enables ``whitebox_beats_transfer``.
        subset: examples in the probe on which checks run their own attacks.
        device: where to run (default: where the model's parameters are).
        seed: seeds the probe's attacks (default: the evaluation's seed). The global
            random state is restored afterwards.
        progress: callback receiving one event per check.
        batch_size: examples per attack call on the probe (``advframe eval`` passes its own,
            so that an ImageNet-sized probe fits where the evaluation did).
    """

    attacks: Sequence[Any] | Mapping[str, Any] | None = None
    transfer_source: nn.Module | None = None
    subset: int = DEFAULT_SUBSET
    device: str | torch.device | None = None
    seed: int | None = None
    progress: ProgressCallback = None
    batch_size: int = 250

    def validate(self) -> None:
        """Refuse a probe of no examples, or batches of none."""
        if self.subset < 1:
            raise ParameterError(f"subset {self.subset} is invalid: the checks need at least one example")
        if self.batch_size < 1:
            raise ParameterError(f"batch_size {self.batch_size} is invalid: use a positive number of examples")

    def objects(self) -> dict[str, Any]:
        """The evaluation's attack objects by name."""
        if isinstance(self.attacks, Mapping):
            return dict(self.attacks)
        return {a.name or type(a).__name__: a for a in (self.attacks or []) if not isinstance(a, str)}


def _probe(model: nn.Module, data: Any, result: Any, rows: list[RunRow], opts: CheckOptions, dev: torch.device,
           seed: int) -> Probe:
    """The class-balanced prefix of the evaluated data on which checks run their own attacks."""
    bounds = tuple(result.meta.get("bounds") or ()) or None
    source = as_source(data, bounds=bounds)
    n = min(opts.subset, len(source), result.examples or opts.subset)
    x, y = source.batch(0, n)
    norms = [r.norm for r in rows if r.norm]
    return Probe(model, x.to(dev), y.to(dev), source.bounds, norms[0] if norms else "linf", seed=seed,
                 attacks=opts.objects(), batch_size=opts.batch_size)


def run_checks(model: nn.Module, data: Any, result: Any, only: Sequence[str] = tuple(CHECKS), **options: Any
               ) -> list[Check]:
    """Run the built-in checks on an evaluation (:func:`advframe.checks.run_checks` calls this).

    Args:
        model: the evaluated model (a Model or a plain logits ``nn.Module``).
        data: the evaluated data, in any form :func:`advframe.evaluate` takes.
        result: the :class:`~advframe.evaluation.EvalResult` of the evaluation (its
            ``runs`` rows, or entries of a results document).
        only: the checks to run (names of :data:`CHECKS`), in the order of :data:`CHECKS`.
        **options: the settings of :class:`CheckOptions` (``attacks``,
            ``transfer_source``, ``subset``, ``device``, ``seed``, ``progress``).

    Returns:
        The checks run.

    Raises:
        ParameterError: for a non-positive ``subset`` or an unknown setting.
    """
    unknown = [k for k in options if k not in {f.name for f in fields(CheckOptions)}]
    if unknown:
        raise ParameterError(f"unknown setting(s) {', '.join(unknown)} of run_checks: use some of "
                             f"{', '.join(f.name for f in fields(CheckOptions))}")
    opts = CheckOptions(**options)
    opts.validate()
    names = [n for n in CHECKS if n in only]
    model = as_model(model).eval()
    dev = torch.device(opts.device) if opts.device is not None else _device_of(model)
    model = model.to(dev)
    source_model = as_model(opts.transfer_source).to(dev).eval() if opts.transfer_source is not None else None
    run_seed = int(result.meta.get("seed", 0) if opts.seed is None else opts.seed)
    checks: list[Check] = []
    with torch.random.fork_rng(devices=[dev.index if dev.index is not None else torch.cuda.current_device()]
                                  if dev.type == "cuda" else []):
        torch.manual_seed(run_seed)
        rows = [RunRow.of(r) for r in result.runs]  # a document's entries (dicts) become rows too
        probe = _probe(model, data, result, rows, opts, dev, run_seed)
        grid = sorted({float(r.eps) for r in rows if r.norm == probe.norm and r.eps > 0})
        ctx = Context(result=result, probe=probe, norm=probe.norm, transfer_source=source_model, grid=grid,
                      rows=rows)
        for i, name in enumerate(names):
            checks.append(CHECKS[name](ctx))
            emit(opts.progress, "checks", i + 1, len(names), check=name, status=checks[-1].status)
    return checks


class HonestyChecks:
    """The checker the plugin registers: the checks of :data:`CHECKS`."""

    name = "honesty"
    summary = "gradient-masking and attack-failure checks (Carlini et al. 2019; Athalye et al. 2018; Croce & Hein 2020)"
    checks: tuple[str, ...] = tuple(CHECKS)
    run = staticmethod(run_checks)


__all__ = ["CHECKS", "CheckOptions", "DEFAULT_SUBSET", "HonestyChecks", "run_checks"]
