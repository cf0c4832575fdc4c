"""Checks on the model itself: gradient health, randomness, and the unbounded attack.

All three run on the probe (the first ``subset`` examples).
"""

from __future__ import annotations

import torch

from advframe import plugins
from advframe_checks.base import ATHALYE, ATHALYE_EOT, CARLINI, CROCE, NOT_APPLICABLE, PASS, WARN, Check, Context, cite
from advframe_checks.probe import AttackUnavailable
from advframe_checks.stats import pct

#: Warn when more than this fraction of examples has a zero or non-finite input gradient.
GRADIENT_THRESHOLD = 0.05
#: Warn when two identical forward passes differ by more than this, relative to the
#: largest output magnitude, even if no prediction changes (float noise stays far below).
OUTPUT_TOLERANCE = 1e-4
#: Warn when an attack with eps covering the whole input range leaves more accuracy than this.
UNBOUNDED_THRESHOLD = 0.05
#: The unbounded check runs the attack with this many steps of this fraction of the input
#: range, through the attack's own ``probe_params`` (deterministic: no random start).
#: Thirty steps let the sign iterates cross the whole range three times: a model robust at
#: eps 0.3 (the shipped ``mnist_cnn_robust``) keeps 13 % of the probe after 10 steps of 0.1,
#: 0 % after 20 and 30, while a masked gradient leaves the same accuracy at every budget.
UNBOUNDED_STEPS = 30
UNBOUNDED_STEP_FRACTION = 0.1


def gradient_health(ctx: Context) -> Check:
    """Input gradients of ``model.loss`` must be non-zero and finite.

    One backward pass of the summed per-example loss over the probe; an example counts
    as unhealthy when its gradient is exactly zero everywhere or holds NaN/inf. Warns
    above :data:`GRADIENT_THRESHOLD` (5 %).
    """
    name, source = "gradient_health", cite(CROCE, ATHALYE)
    probe = ctx.probe
    model = probe.model
    zero = nonfinite = 0
    norms = []
    for i in range(0, probe.n, probe.batch_size):
        x = probe.x[i:i + probe.batch_size].detach().clone().requires_grad_(True)
        y = probe.y[i:i + probe.batch_size]
        with torch.enable_grad():
            loss = model.loss(model(x), y)
            try:
                (grad,) = torch.autograd.grad(loss.sum(), x, allow_unused=True)
            except RuntimeError as exc:
                return Check(name, WARN, f"model.loss has no gradient path to the input ({exc}); gradient "
                                         f"attacks cannot work on this model and its accuracy under them means "
                                         f"nothing.", source)
        if grad is None:
            grad = torch.zeros_like(x)
        flat = grad.detach().reshape(grad.shape[0], -1)
        finite = torch.isfinite(flat).all(dim=1) & torch.isfinite(loss.detach().reshape(-1))
        nonfinite += int((~finite).sum())
        is_zero = finite & (flat.abs().amax(dim=1) == 0) if flat.shape[1] else finite
        zero += int(is_zero.sum())
        norms.append(torch.where(finite, flat.norm(dim=1), torch.zeros_like(finite, dtype=flat.dtype)))
    bad = (zero + nonfinite) / probe.n if probe.n else 0.0
    median = float(torch.cat(norms).median()) if norms else 0.0
    text = (f"{ctx.on_probe}: {zero} example(s) with an all-zero input gradient of model.loss and {nonfinite} "
            f"with a non-finite one or a non-finite loss ({pct(bad)}; warn above {pct(GRADIENT_THRESHOLD)}); "
            f"median gradient L2 norm {median:.3g}.")
    if bad > GRADIENT_THRESHOLD:
        return Check(name, WARN, "Input gradients are unhealthy " + text + " Gradient attacks get no signal here "
                                 "(shattered or vanishing gradients): use BPDA or a gradient-free attack.", source)
    return Check(name, PASS, "Input gradients are healthy " + text, source)


def deterministic_predictions(ctx: Context) -> Check:
    """Two identical forward passes must give the same predictions.

    Warns when any prediction on the probe changes between two passes in eval mode, or
    the outputs differ by more than :data:`OUTPUT_TOLERANCE` of their largest magnitude:
    the model is randomised, so a single gradient is only one sample; evaluate with
    Expectation over Transformation.
    """
    name, source = "deterministic_predictions", cite(CROCE, ATHALYE_EOT)
    probe = ctx.probe
    with torch.no_grad():
        first, second, diff, scale = [], [], 0.0, 0.0
        for i in range(0, probe.n, probe.batch_size):
            x = probe.x[i:i + probe.batch_size]
            a, b = probe.model(x), probe.model(x)
            first.append(probe.model.predict(a))
            second.append(probe.model.predict(b))
            d = (a.float() - b.float()).abs()
            if d.numel():
                diff = max(diff, float(d.nan_to_num(nan=float("inf")).max()))
                scale = max(scale, float(a.float().abs().nan_to_num(nan=0.0, posinf=0.0, neginf=0.0).max()))
    p1, p2 = torch.cat(first), torch.cat(second)
    changed = int((p1 != p2).sum())
    relative = diff / max(scale, 1e-12)
    text = (f"Two identical forward passes {ctx.on_probe}: {changed} prediction(s) differ "
            f"({pct(changed / probe.n if probe.n else 0.0)}), largest output difference {diff:.3g} "
            f"({relative:.3g} of the largest output; warn on any changed prediction or above {OUTPUT_TOLERANCE:g}).")
    if changed or relative > OUTPUT_TOLERANCE:
        return Check(name, WARN, text + " The model is randomised: attack the expectation over its randomness "
                                        "(Expectation over Transformation) and report accuracy over several draws.",
                     source)
    return Check(name, PASS, text, source)


def unbounded_attack_wins(ctx: Context) -> Check:
    """An attack whose eps spans the whole input range must drive accuracy to about zero.

    Runs the first registered attack declaring ``unbounded_probe`` that supports linf
    (iter_basic, else pgd among the built-ins), with its own ``probe_params`` for 30
    deterministic steps of 10 % of the input range, at linf eps = hi - lo on the probe;
    warns when top-1 stays above :data:`UNBOUNDED_THRESHOLD` (5 %).
    """
    name, source = "unbounded_attack_wins", cite(ATHALYE, CARLINI)
    probe = ctx.probe
    lo, hi = probe.bounds
    eps = hi - lo
    step = UNBOUNDED_STEP_FRACTION * eps
    tried = []
    for entry in plugins.registry().with_trait("attacks", "unbounded_probe"):
        attack = entry.name
        try:
            if "linf" not in entry.trait("norms", ()):
                raise AttackUnavailable(f"attack '{attack}' has no linf norm")
            overrides = probe.schedule(attack, UNBOUNDED_STEPS, step)
            run = probe.attack(attack, eps, overrides=overrides or {}, norm="linf")
        except AttackUnavailable as exc:
            tried.append(str(exc))
            continue
        how = attack + (f" ({UNBOUNDED_STEPS} steps of {step:g})" if overrides is not None else "")
        text = (f"{how} with linf eps = {eps:g} (the whole input range [{lo:g}, {hi:g}]) {ctx.on_probe} leaves "
                f"top-1 {pct(run.top1)} (clean {pct(probe.clean_top1)}; warn above {pct(UNBOUNDED_THRESHOLD)}).")
        if run.top1 > UNBOUNDED_THRESHOLD:
            return Check(name, WARN, text + " An unbounded attack can reach any input; if it fails, the attack "
                                            "gets no useful gradient (masked gradients) or is broken.", source)
        return Check(name, PASS, text, source)
    if not tried:
        tried.append("no plugin registers an attack declaring unbounded_probe")
    return Check(name, NOT_APPLICABLE, "No unbounded attack could run: " + "; ".join(tried) + ".", source)
