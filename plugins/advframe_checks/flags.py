"""Checks from AutoAttack's flags (Croce & Hein 2020): a black-box attack beating the
white-box ones, probabilities instead of logits, and gradient calls inside the forward pass.

``blackbox_beats_whitebox`` reads only the evaluation's runs (a black-box search such as
Square with 5,000 queries per example is too costly to run on the probe); the two model
checks run one forward pass on the probe each.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import torch

from advframe import plugins
from advframe.errors import UnknownNameError
from advframe.evaluation import RunRow
from advframe_checks.base import CARLINI, CROCE_FLAGS, NOT_APPLICABLE, PASS, WARN, Check, Context, cite, join
from advframe_checks.consistency import noise_attacks
from advframe_checks.stats import BOUND_TEXT, Excess, excess, pct

#: A score row counts as a probability distribution when its entries are >= -PROBABILITY_TOLERANCE
#: and its sum is within PROBABILITY_TOLERANCE of 1.
PROBABILITY_TOLERANCE = 1e-4
#: Examples of the probe on which the forward pass is watched for gradient calls.
FORWARD_EXAMPLES = 8


def _is_black_box(ctx: Context, attack: str) -> bool:
    """Whether ``attack`` declares ``black_box`` (its registry entry, else the evaluation's object)."""
    try:
        return bool(plugins.registry().get("attacks", attack).trait("black_box"))
    except UnknownNameError:
        return bool(getattr(ctx.probe.attacks.get(attack), "black_box", False))


def _standalone(ctx: Context, black: set[str], noise: set[str]) -> list[tuple[Excess, str]]:
    """Each black-box run against the strongest white-box run at its eps and norm (runs of
    an ordinary evaluation, each attack on every example)."""
    groups: dict[tuple[str, float], list[RunRow]] = {}
    for r in ctx.rows:
        if r.top1 is not None and r.examples and not r.targeted and r.eps > 0 and r.worst_case_step is None:
            groups.setdefault((r.norm, float(r.eps)), []).append(r)
    out = []
    for (norm, eps), runs in groups.items():
        white = [r for r in runs if r.attack not in black and r.attack not in noise]
        if not white:
            continue
        best = min(white, key=lambda r: r.top1)
        for bb in (r for r in runs if r.attack in black):
            e = excess(best.top1, int(best.examples), bb.top1, int(bb.examples))
            out.append((e, f"{norm} eps {eps:g}: {bb.attack} leaves top-1 {pct(bb.top1)} ({bb.examples} "
                           f"examples), the strongest white-box attack {best.attack} {pct(best.top1)} "
                           f"({best.examples} examples; {e.describe()})"))
    return out


def _worst_case(ctx: Context, black: set[str], noise: set[str]) -> list[tuple[Excess, str]]:
    """In a worst-case evaluation: the robust accuracy before each black-box step that
    follows a white-box one against the robust accuracy after it (AutoAttack's own flag:
    Square lowering the robust accuracy the white-box attacks left)."""
    groups: dict[tuple[str, float], list[RunRow]] = {}
    for r in ctx.rows:
        if r.worst_case_step is not None and not r.targeted and r.eps > 0:
            groups.setdefault((r.norm, float(r.eps)), []).append(r)
    n = int(ctx.result.examples or 0)
    out = []
    for (norm, eps), runs in groups.items():
        runs = sorted(runs, key=lambda r: r.worst_case_step or 0)
        for k, bb in enumerate(runs):
            earlier = runs[:k]
            if bb.attack not in black or not any(r.attack not in black | noise for r in earlier):
                continue
            before, after = earlier[-1].robust_after, bb.robust_after
            if before is None or after is None or n < 1:
                continue
            e = excess(before, n, after, n)
            names = ", ".join(r.attack for r in earlier)
            out.append((e, f"worst case at {norm} eps {eps:g}: {bb.attack}, run after {names}, broke "
                           f"{bb.broke or 0} of the examples they left robust: robust accuracy "
                           f"{pct(before)} before it, {pct(after)} after ({n} examples; {e.describe()})"))
    return out


def blackbox_beats_whitebox(ctx: Context) -> Check:
    """A black-box attack must not beat the white-box attacks beyond sampling noise.

    Black-box attacks are those declaring ``black_box`` (square among the built-ins);
    white-box ones are the rest, less the noise baselines. In an ordinary evaluation each
    black-box run is compared with the strongest (lowest top-1) white-box run at the
    same eps and norm. In a worst-case evaluation, where a later attack only sees the
    examples the earlier ones left robust, the robust accuracy before a black-box step
    that follows a white-box one is compared with the robust accuracy after it. Reads
    only the runs: ``not_applicable`` without such a pair.
    """
    name, source = "blackbox_beats_whitebox", cite(CROCE_FLAGS, CARLINI)
    black = {r.attack for r in ctx.rows if _is_black_box(ctx, r.attack)}
    if not black:
        return Check(name, NOT_APPLICABLE, "The evaluation ran no black-box attack (one declaring black_box); this "
                                           "check runs none of its own, a query-based search being too costly for "
                                           "the probe.", source)
    noise = noise_attacks()
    tests = _standalone(ctx, black, noise) + _worst_case(ctx, black, noise)
    if not tests:
        return Check(name, NOT_APPLICABLE, join([f"The evaluation ran {', '.join(sorted(black))} but no white-box "
                                                 "attack at the same eps and norm (untargeted, above eps 0)"]),
                     source)
    beaten = [text for e, text in tests if e.significant]
    head = f"Compared {len(tests)} black-box run(s) with the white-box ones ({BOUND_TEXT})"
    if beaten:
        return Check(name, WARN, join([head] + beaten + [
            "A black-box attack beating the white-box ones means the gradients mislead the white-box attacks "
            "(gradient masking): the white-box numbers overstate robustness; run the black-box attack with "
            "more queries and restarts, or an adaptive attack"]), source)
    _, text = max(tests, key=lambda t: t[0].z)
    return Check(name, PASS, join([head, f"None beats them beyond noise; closest: {text}"]), source)


def logits_not_probabilities(ctx: Context) -> Check:
    """The scores the attacks read must not already be softmax probabilities.

    One forward pass over the probe; a row counts as a probability distribution when all
    its scores (``model.scores`` of the outputs: the outputs themselves for a logits
    model) are >= -1e-4 and they sum to 1 within 1e-4. Warns when every row is one.
    """
    name, source = "logits_not_probabilities", cite(CROCE_FLAGS)
    probe = ctx.probe
    rows = prob_rows = 0
    lo, hi = float("inf"), float("-inf")
    with torch.no_grad():
        for i in range(0, probe.n, probe.batch_size):
            s = probe.model.scores(probe.model(probe.x[i:i + probe.batch_size])).double()
            if s.ndim != 2 or s.shape[1] < 2:
                return Check(name, NOT_APPLICABLE, f"The model's scores have shape {tuple(s.shape)}, not one row of "
                                                   f"two or more class scores per example.", source)
            sums = s.sum(dim=1)
            prob = (s.amin(dim=1) >= -PROBABILITY_TOLERANCE) & ((sums - 1).abs() <= PROBABILITY_TOLERANCE)
            rows += int(s.shape[0])
            prob_rows += int(prob.sum())
            lo, hi = min(lo, float(sums.min())), max(hi, float(sums.max()))
    if rows == 0:
        return Check(name, NOT_APPLICABLE, "The probe holds no example.", source)
    text = (f"The scores the attacks read (model.scores of the outputs) {ctx.on_probe}: {prob_rows} of {rows} rows "
            f"are non-negative and sum to 1 within {PROBABILITY_TOLERANCE:g} (row sums from {lo:.6g} to {hi:.6g}; "
            f"warn when every row is)")
    if prob_rows == rows:
        return Check(name, WARN, join([text, "The model outputs probabilities, not logits: the attacks' losses "
                                             "(cross-entropy, DLR, margin) then work on squashed scores whose "
                                             "gradients vanish or lose precision, and the accuracy under attack "
                                             "overstates robustness; attack the logits (drop the final softmax)"]),
                     source)
    return Check(name, PASS, join([text]), source)


@contextlib.contextmanager
def _count_gradient_calls() -> Iterator[dict[str, int]]:
    """Count calls of torch's gradient entry points while the block runs (nested calls once).

    Patches ``torch.autograd.grad``, ``torch.autograd.backward`` and ``torch.Tensor.backward``
    and, where this torch has it, the engine call both go through
    (``torch.autograd._engine_run_backward``, which also catches a ``grad`` imported by
    name before the patch); restores every one of them on exit, even on an error.
    """
    counts: dict[str, int] = {}
    depth = [0]
    patched: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, attr: str, label: str) -> None:
        original = owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr, None)
        if original is None:
            return

        @functools.wraps(original)
        def counting(*args: Any, **kwargs: Any) -> Any:
            if depth[0] == 0:
                counts[label] = counts.get(label, 0) + 1
            depth[0] += 1
            try:
                return original(*args, **kwargs)
            finally:
                depth[0] -= 1

        patched.append((owner, attr, original))
        setattr(owner, attr, counting)

    try:
        patch(torch.Tensor, "backward", "Tensor.backward")
        patch(torch.autograd, "backward", "torch.autograd.backward")
        patch(torch.autograd, "grad", "torch.autograd.grad")
        patch(torch.autograd, "_engine_run_backward", "the autograd engine")
        yield counts
    finally:
        for owner, attr, original in reversed(patched):
            setattr(owner, attr, original)


def no_gradient_in_forward(ctx: Context) -> Check:
    """The model's forward pass must not compute gradients of its own.

    Runs one forward pass on the first 8 examples of the probe, with gradients enabled
    as during an attack, while counting calls of ``torch.autograd.grad``,
    ``torch.autograd.backward`` and ``Tensor.backward`` (the patches are undone
    afterwards). Any call warns: the model optimises at inference time (a dynamic or
    adaptive defense), which a fixed attack suite does not evaluate reliably.
    """
    name, source = "no_gradient_in_forward", cite(CROCE_FLAGS)
    probe = ctx.probe
    m = min(FORWARD_EXAMPLES, probe.n)
    if m == 0:
        return Check(name, NOT_APPLICABLE, "The probe holds no example.", source)
    x = probe.x[:m].detach().clone()
    error = None
    with _count_gradient_calls() as counts, torch.enable_grad():
        try:
            probe.model(x)
        except RuntimeError as exc:
            error = exc
    calls = ", ".join(f"{label} {k} time(s)" for label, k in counts.items())
    where = f"One forward pass on the first {m} examples of the probe (gradients enabled, as during an attack)"
    if counts:
        return Check(name, WARN, join([f"{where} called {calls}",
                                       "The model computes gradients at inference time (a dynamic or adaptive "
                                       "defense, e.g. test-time optimisation or purification): a fixed attack "
                                       "suite, AutoAttack included, does not evaluate it reliably; design an "
                                       "adaptive attack that differentiates through (or around) that "
                                       "optimisation"]), source)
    if error is not None:
        return Check(name, NOT_APPLICABLE, join([f"{where} failed: {error}"]), source)
    return Check(name, PASS, join([f"{where} called neither torch.autograd.grad, torch.autograd.backward nor "
                                   f"Tensor.backward"]), source)
