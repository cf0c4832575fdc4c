"""Checks that compare accuracies: eps = 0, monotonicity, iterative vs one-step,
white-box vs noise and transfer, label leaking.

Each reads the evaluation's runs when they hold what it needs, and otherwise runs the
attacks it needs itself on the probe (the first ``subset`` examples). Every
comparison of two accuracies uses the bound of :mod:`advframe_checks.stats`.
"""

from __future__ import annotations

from typing import Any

from advframe import plugins
from advframe.evaluation import RunRow
from advframe_checks.base import ATHALYE, CARLINI, KURAKIN, NOT_APPLICABLE, PASS, WARN, Check, Context, cite, join
from advframe_checks.probe import AttackUnavailable
from advframe_checks.stats import BOUND_TEXT, Excess, excess, pct


def iterative_pairs() -> list[tuple[str, str]]:
    """``(iterative, its one-step counterpart)``: every attack declaring ``one_step_counterpart``."""
    return [(e.name, e.trait("one_step_counterpart")) for e in plugins.registry().entries["attacks"].values()
            if e.trait("one_step_counterpart")]


def noise_attacks() -> set[str]:
    """Attacks that declare they are random-noise baselines (not white-box attacks)."""
    return {e.name for e in plugins.registry().with_trait("attacks", "noise_baseline")}


def black_box_attacks() -> set[str]:
    """Attacks that declare ``black_box`` (they use no gradient: not white-box attacks)."""
    return {e.name for e in plugins.registry().with_trait("attacks", "black_box")}


def noise_baseline(norm: str) -> str | None:
    """The first registered noise baseline of ``norm`` (built-ins register first)."""
    for e in plugins.registry().with_trait("attacks", "noise_baseline"):
        if norm in e.trait("norms", ()):
            return e.name
    return None


def leak_attacks() -> list[str]:
    """Attacks that declare ``leaks_labels`` (one-step true-label attacks, Kurakin §4.2)."""
    return [e.name for e in plugins.registry().with_trait("attacks", "leaks_labels")]


def _n(run: RunRow) -> int:
    return int(run.examples)


def eps_zero_clean(ctx: Context) -> Check:
    """An attack at eps = 0 must leave every prediction as it is.

    Uses the evaluation's runs at eps = 0 when there are any (their top-1 must equal the
    clean top-1 exactly, with no refused batch); otherwise re-runs each of the
    evaluation's attacks at eps = 0 on the probe and requires identical predictions.
    """
    name, source = "eps_zero_clean", cite(CARLINI)
    result = ctx.result
    zero = [r for r in ctx.rows if r.eps == 0.0 and r.norm == ctx.norm and r.worst_case_step is None]
    if zero:
        bad, good = [], []
        for r in zero:
            n = result.examples
            if r.top1 is None or r.examples != n or r.violations:
                bad.append(f"{r.attack} at eps = 0 had {r.violations} example(s) outside the threat "
                           f"model and {r.examples} of {n} examples counted")
            elif round(r.top1 * n) != round(result.clean_top1 * n):
                bad.append(f"{r.attack} at eps = 0 gives top-1 {pct(r.top1)} but the clean top-1 is "
                           f"{pct(result.clean_top1)} on the same {n} examples")
            else:
                good.append(r.attack)
        if bad:
            return Check(name, WARN, join(bad + ["An attack that changes predictions without perturbing the input "
                                                 "points to a bug or a stochastic model"]), source)
        return Check(name, PASS, join([f"{', '.join(good)} at eps = 0 give exactly the clean top-1 "
                                       f"{pct(result.clean_top1)} on all {result.examples} examples"]), source)
    probe = ctx.probe
    seen: dict[str, RunRow] = {}
    for r in ctx.rows:
        if not r.targeted:
            seen.setdefault(r.attack, r)
    sentences, bad, unavailable = [], False, []
    for attack, r in seen.items():
        try:
            run = probe.attack(attack, 0.0, params=r.params)
        except AttackUnavailable as exc:
            unavailable.append(str(exc))
            continue
        changed = int((run.predictions != probe.clean_predictions).sum())
        bad = bad or changed > 0
        sentences.append(f"{attack} re-run at eps = 0 {ctx.on_probe}: top-1 {pct(run.top1)} vs clean "
                         f"{pct(probe.clean_top1)}, {changed} prediction(s) changed")
    if not sentences:
        why = "; ".join(unavailable) or "the evaluation has no untargeted attack to re-run"
        return Check(name, NOT_APPLICABLE, join([f"No eps = 0 run and none could be re-run: {why}"]), source)
    return Check(name, WARN if bad else PASS, join(["The evaluation has no eps = 0 run"] + sentences), source)


def monotone_in_eps(ctx: Context) -> Check:
    """For each attack, accuracy must not rise with eps beyond sampling noise.

    Every pair eps_i < eps_j of the same attack is tested; the largest rise is reported.
    """
    name, source = "monotone_in_eps", cite(ATHALYE, CARLINI)
    groups: dict[tuple[str, bool], list[RunRow]] = {}
    for r in ctx.runs(untargeted=False):
        groups.setdefault((r.attack, bool(r.targeted)), []).append(r)
    groups = {k: sorted(v, key=lambda r: r.eps) for k, v in groups.items() if len({r.eps for r in v}) > 1}
    if not groups:
        return Check(name, NOT_APPLICABLE, "No attack ran at two or more eps values.", source)
    worst: tuple[Excess, str, RunRow, RunRow] | None = None
    rises = []
    for (attack, _), runs in groups.items():
        for i, lo in enumerate(runs):
            for hi in runs[i + 1:]:
                if hi.eps <= lo.eps:
                    continue
                e = excess(hi.top1, _n(hi), lo.top1, _n(lo))
                if worst is None or e.z > worst[0].z:
                    worst = (e, attack, lo, hi)
                if e.significant:
                    rises.append(f"{attack}: top-1 rises from {pct(lo.top1)} at eps {lo.eps:g} to "
                                 f"{pct(hi.top1)} at eps {hi.eps:g} ({e.describe()})")
    if worst is None:
        return Check(name, NOT_APPLICABLE, "No attack ran at two or more distinct eps values.", source)
    e, attack, lo, hi = worst
    head = (f"Checked {len(groups)} attack(s) over their eps grids with a {BOUND_TEXT}")
    if rises:
        return Check(name, WARN, join([head] + rises + ["A larger budget should never help the model: "
                                                        "suspect masked gradients or a failing attack"]), source)
    return Check(name, PASS, join([head, f"Closest to a rise: {attack} from "
                                         f"{pct(lo.top1)} at eps {lo.eps:g} to {pct(hi.top1)} at eps "
                                         f"{hi.eps:g} ({e.describe()})"]), source)


#: Steps of an iterative attack the checks run themselves on the probe (each of eps / 4).
PROBE_STEPS = 10


def _side(ctx: Context, attack: str, eps: float) -> tuple[float, int, str]:
    """``(top1, n, where)`` of ``attack`` at ``eps``: the evaluation's run, else the probe
    (an iterative attack with its own cheap schedule: 10 steps of eps / 4)."""
    run = ctx.run_of(attack, eps)
    if run is not None:
        return run.top1, _n(run), "evaluation"
    cheap = ctx.probe.schedule(attack, PROBE_STEPS, eps / 4)
    res = ctx.probe.attack(attack, eps, overrides=cheap or {})
    how = f"probe, {PROBE_STEPS} steps of eps/4" if cheap is not None else "probe"
    return res.top1, ctx.probe.n, how


def _pair_accuracies(ctx: Context, strong: str, weak: str
                     ) -> tuple[list[tuple[float, float, int, float, int]], str]:
    """``[(eps, top1 strong, n, top1 weak, n)]`` and where the numbers come from.

    All eps where the evaluation ran both; otherwise one eps (the largest where the
    evaluation ran either, else its largest eps) with the missing side run on the probe.
    """
    common = [(r.eps, r, ctx.run_of(weak, r.eps)) for r in ctx.runs() if r.attack == strong and r.eps > 0]
    rows = [(eps, s.top1, _n(s), w.top1, _n(w)) for eps, s, w in common if w is not None]
    if rows:
        return rows, "from the evaluation's runs"
    either = [r.eps for r in ctx.runs() if r.attack in (strong, weak) and r.eps > 0]
    if not either and not ctx.grid:
        raise AttackUnavailable("the evaluation has no eps above 0")
    eps = max(either) if either else ctx.grid[-1]
    ps, ns, ws = _side(ctx, strong, eps)
    pw, nw, ww = _side(ctx, weak, eps)
    if ws == ww == "evaluation":
        where = "from the evaluation's runs"
    elif ws.startswith("probe") and ww.startswith("probe"):
        detail = ws[len("probe"):] or ww[len("probe"):]
        where = f"{ctx.on_probe} (both run by the check{detail})"
    else:
        where = f"({strong} from the {ws}, {weak} from the {ww}; the probe is the first {ctx.probe.n} examples)"
    return [(eps, ps, ns, pw, nw)], where


def _params(ctx: Context, attack: str) -> dict[str, Any] | None:
    for r in ctx.rows:
        if r.attack == attack:
            return r.params
    return None


def iterative_beats_one_step(ctx: Context) -> Check:
    """An iterative attack must be at least as strong as its one-step counterpart.

    Pairs: every attack declaring a ``one_step_counterpart`` (iter_basic vs fgsm and
    iter_ll vs step_ll among the built-ins), at equal eps. Uses the runs where
    the evaluation ran both at an eps; otherwise takes the side the evaluation ran and
    runs the other on the probe (iterative attacks with a cheap schedule of 10 steps of
    eps / 4), at the largest eps the evaluation ran either attack (else its largest eps).
    """
    name, source = "iterative_beats_one_step", cite(ATHALYE, KURAKIN)
    sentences, warn, unavailable = [], False, []
    pairs = iterative_pairs()
    if not pairs:
        return Check(name, NOT_APPLICABLE, "No plugin registers an attack declaring a one_step_counterpart.", source)
    for strong, weak in pairs:
        try:
            rows, where = _pair_accuracies(ctx, strong, weak)
        except AttackUnavailable as exc:
            unavailable.append(f"{strong} vs {weak}: {exc}")
            continue
        tests = [(excess(ps, ns, pw, nw), eps, ps, pw) for eps, ps, ns, pw, nw in rows]
        e, eps, ps, pw = max(tests, key=lambda t: t[0].z)
        warn = warn or e.significant
        verdict = "weaker than" if e.significant else "at least as strong as"
        over = f" (closest of {len(rows)} eps values)" if len(rows) > 1 else ""
        sentences.append(f"{strong} is {verdict} {weak} at eps {eps:g}{over} {where}: top-1 {pct(ps)} vs "
                         f"{pct(pw)} ({e.describe()})")
    if not sentences:
        return Check(name, NOT_APPLICABLE, join(["No pair could be compared"] + unavailable), source)
    tail = [f"Bound: {BOUND_TEXT}"]
    if warn:
        tail.insert(0, "A one-step attack beating an iterative one is a sign of masked gradients")
    return Check(name, WARN if warn else PASS, join(sentences + tail), source)


def _whitebox_best(ctx: Context) -> RunRow | None:
    """The strongest untargeted white-box run (neither noise nor black-box) at the
    evaluation's largest white-box eps."""
    skip = noise_attacks() | black_box_attacks()
    wb = [r for r in ctx.runs() if r.attack not in skip and r.eps > 0]
    if not wb:
        return None
    eps = max(r.eps for r in wb)
    return min((r for r in wb if r.eps == eps), key=lambda r: r.top1)


def whitebox_beats_noise(ctx: Context) -> Check:
    """The strongest white-box attack must beat random noise at equal eps.

    The noise is the first registered attack declaring ``noise_baseline`` for the norm
    (rand_sign among the built-ins). Compared at the evaluation's largest white-box eps;
    the noise comes from the runs when the evaluation ran it there, else from the probe.
    """
    name, source = "whitebox_beats_noise", cite(ATHALYE, CARLINI)
    best = _whitebox_best(ctx)
    if best is None:
        return Check(name, NOT_APPLICABLE, "The evaluation ran no untargeted white-box attack at eps above 0.", source)
    eps = best.eps
    baseline = noise_baseline(ctx.norm)
    if baseline is None:
        return Check(name, NOT_APPLICABLE, f"No plugin registers a noise baseline for norm {ctx.norm}.", source)
    noise = ctx.run_of(baseline, eps)
    if noise is not None:
        pn, nn_, where = noise.top1, _n(noise), "from the evaluation's runs"
    else:
        try:
            run = ctx.probe.attack(baseline, eps)
        except AttackUnavailable as exc:
            return Check(name, NOT_APPLICABLE, join([f"Could not run {baseline}: {exc}"]), source)
        pn, nn_, where = run.top1, ctx.probe.n, ctx.on_probe
    return _versus_baseline(name, source, best, f"{baseline} noise {where}", pn, nn_,
                            "Random noise beating the gradient means the gradient does not point to adversarial "
                            "examples: masked gradients")


def _versus_baseline(name: str, source: str, best: RunRow, baseline: str, p: float, n: int,
                     warning: str) -> Check:
    """Warn when the white-box run ``best`` leaves more accuracy than a baseline beyond noise."""
    e = excess(best.top1, _n(best), p, n)
    text = (f"At eps {best.eps:g} the strongest white-box attack {best.attack} leaves top-1 "
            f"{pct(best.top1)} ({_n(best)} examples); {baseline} leaves {pct(p)} ({n} examples; "
            f"{e.describe()}, {BOUND_TEXT})")
    return Check(name, WARN if e.significant else PASS, join([text] + ([warning] if e.significant else [])), source)


def whitebox_beats_transfer(ctx: Context) -> Check:
    """The strongest white-box attack must beat the same attack transferred from another model.

    Runs only when a ``transfer_source`` model is given: the attack is crafted on it on
    the probe and measured on the model under evaluation.
    """
    name, source = "whitebox_beats_transfer", cite(ATHALYE, CARLINI)
    if ctx.transfer_source is None:
        return Check(name, NOT_APPLICABLE, "No transfer source model was given.", source)
    best = _whitebox_best(ctx)
    if best is None:
        return Check(name, NOT_APPLICABLE, "The evaluation ran no untargeted white-box attack at eps above 0.", source)
    try:
        run = ctx.probe.attack(best.attack, best.eps, params=best.params, source=ctx.transfer_source)
    except AttackUnavailable as exc:
        return Check(name, NOT_APPLICABLE, join([f"Could not transfer {best.attack}: {exc}"]), source)
    return _versus_baseline(name, source, best, f"the same attack transferred from the source model {ctx.on_probe}",
                            run.top1, ctx.probe.n, "A black-box transfer attack beating the white-box one means "
                                                   "the model's own gradients mislead: masked gradients")


def label_leaking(ctx: Context) -> Check:
    """Accuracy under a one-step true-label attack must not exceed clean accuracy.

    Uses the evaluation's runs of attacks declaring ``leaks_labels`` (fgsm, fast_grad_*
    among the built-ins), with their label-leak counts; otherwise runs the first such
    attack of the evaluation's norm on the probe over the evaluation's eps grid.
    """
    name, source = "label_leaking", cite(f"{KURAKIN} §4.2")
    result = ctx.result
    leaky = leak_attacks()
    runs = [r for r in ctx.runs() if r.attack in leaky and r.eps > 0]
    rows: list[tuple[str, float, float, int, float, int, Any]] = []
    where = "from the evaluation's runs"
    if runs:
        rows = [(r.attack, r.eps, r.top1, _n(r), result.clean_top1, result.examples, r.label_leaks) for r in runs]
    elif ctx.grid:
        where = ctx.on_probe
        first = next((a for a in leaky if ctx.norm in plugins.registry().get("attacks", a).trait("norms", ())), None)
        if first is None:
            return Check(name, NOT_APPLICABLE, f"No plugin registers a label-leaking attack for norm {ctx.norm}.",
                         source)
        try:
            for eps in ctx.grid:
                run = ctx.probe.attack(first, eps)
                rows.append((first, eps, run.top1, ctx.probe.n, ctx.probe.clean_top1, ctx.probe.n, None))
        except AttackUnavailable as exc:
            return Check(name, NOT_APPLICABLE, join([f"Could not run {first}: {exc}"]), source)
    else:
        return Check(name, NOT_APPLICABLE, "The evaluation has no eps above 0.", source)
    leaks, worst = [], None
    for attack, eps, p, n, pc, nc, leak_count in rows:
        e = excess(p, n, pc, nc)
        if worst is None or e.z > worst[0].z:
            worst = (e, attack, eps, leak_count)
        if e.significant:
            leaks.append(f"{attack} at eps {eps:g}: top-1 {pct(p)} above clean {pct(pc)} ({e.describe()})")
    e, attack, eps, leak_count = worst
    counts = f"; label leaks counted by the evaluation: {leak_count}" if leak_count is not None else ""
    if leaks:
        twin = plugins.registry().get("attacks", attack).trait("label_free_twin") if attack in leaky else None
        instead = f" ({twin})" if twin else ""
        return Check(name, WARN, join([f"Checked {len(rows)} run(s) {where}"] + leaks +
                                      ["The attack reveals the true label instead of hiding it (label leaking): "
                                       f"report attacks on the predicted label{instead} instead"]), source)
    return Check(name, PASS, join([f"Checked {len(rows)} one-step true-label run(s) {where}; none is above the clean "
                                   f"top-1 beyond noise ({BOUND_TEXT}); closest: {attack} at eps {eps:g}, "
                                   f"top-1 {pct(e.p1)} vs clean {pct(e.p2)} ({e.describe()}){counts}"]), source)
