"""FAB-T: the targeted Fast Adaptive Boundary attack (Croce & Hein, ICML 2020), linf and l2."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from advframe.attack import Attack
from advframe.model import Model
from advframe.ops import flat_norm, generator, per_example, rand_like, randn_like
from advframe.params import check_optional_int, check_range
from advframe.threat import ThreatModel
from advframe_autoattack._common import check_targets_param, target_count, top_other_classes
from advframe_autoattack._hyperplane import project_hyperplane


class FABT(Attack):
    """FAB-T, targeted Fast Adaptive Boundary attack (Croce & Hein, *Minimally distorted
    adversarial examples with a fast adaptive boundary attack*, ICML 2020), in the
    targeted form AutoAttack runs (Croce & Hein, *Reliable evaluation ...*, ICML 2020).

    A minimal-norm attack. For each of the ``k`` classes other than ``y`` with the
    highest clean scores (best first), on the examples not yet broken: linearise the
    score difference ``f = z_t − z_y`` at the iterate ``x_i`` (one counted gradient of
    ``f``), project both ``x_i`` and the clean ``x_0`` onto the linearised boundary
    ``f(x_i) + ∇f·(z − x_i) = 0`` inside the box (minimal linf or l2 step, exactly, see
    :mod:`advframe_autoattack._hyperplane`), and move to the biased combination

    ``x_{i+1} = clip((1 − α)(x_i + η d_i) + α (x_0 + η d_0))``,
    ``α = min(max(||d_i|| / (||d_i|| + ||d_0||), 0), alpha_max)``.

    One forward query checks ``x_{i+1}``; an adversarial iterate closer to ``x_0`` than
    the best so far is kept, and the iterate is pulled back to ``x_0 + β (x_{i+1} − x_0)``.
    Restarts after the first start at a random point at half the eps radius.

    Result: examples whose minimal adversarial point lies within ``threat.eps`` return it
    (it is adversarial and inside the ball); the others — and examples misclassified
    from the start — return the clean input, as the reference does. ``final_search``
    bisection steps on the segment from ``x_0`` to the best point (forward queries only)
    shrink the found distance further; 0 (default) is the reference algorithm, which on
    an affine model stops about 1 % above the minimal distance.

    Cost: one forward query (clean scores), then per target class and restart
    ``steps`` gradient evaluations and ``steps`` forward queries (plus ``final_search``
    queries) over the examples still robust.

    Args:
        steps: iterations per run (default 100).
        restarts: runs per target class (default 1, AutoAttack standard).
        n_target_classes (int | None): ``k``; ``None`` (default) = AutoAttack's 9 capped at
            classes − 1; an explicit ``k`` needs at least ``k + 1`` classes.
        alpha_max: largest bias towards ``x_0`` (default 0.1).
        eta: overshoot of the projection (default 1.05).
        beta: pull-back towards ``x_0`` after a success (default 0.9).
        final_search: bisection steps after each run (default 0).
        seed (int | None): seed of the random restarts; ``None`` (default) uses torch's global RNG.

    Norms linf and l2; not targetable (the targets are internal); reads the true label.
    """

    name: ClassVar[str] = "fab_t"
    summary: ClassVar[str] = "Targeted Fast Adaptive Boundary: minimal linf/l2 adversarial points (Croce & Hein 2020)"
    norms: ClassVar[tuple[str, ...]] = ("linf", "l2")
    targetable: ClassVar[bool] = False
    uses_true_label: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {"steps": 100, "restarts": 1, "n_target_classes": None, "alpha_max": 0.1,
                                          "eta": 1.05, "beta": 0.9, "final_search": 0, "seed": None}

    def validate(self) -> None:
        owner = f"attack '{self.name}'"
        check_optional_int(owner, "steps", self.steps, 0)
        check_optional_int(owner, "restarts", self.restarts, 1)
        check_optional_int(owner, "final_search", self.final_search, 0)
        check_optional_int(owner, "seed", self.seed, 0)
        check_targets_param(owner, self.n_target_classes)
        check_range(owner, alpha_max=(self.alpha_max, 0.0, 1.0), eta=(self.eta, 1.0, 10.0), beta=(self.beta, 0.0, 1.0))

    def perturb(self, model: Model, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                target: torch.Tensor | None) -> torch.Tensor:
        if threat.eps == 0:
            return threat.clip_bounds(x)
        owner = f"attack '{self.name}'"
        out = self.forward(model, x)
        scores = model.scores(out)
        k = target_count(owner, self.n_target_classes, scores.shape[1])
        targets = top_other_classes(scores, y, k)
        robust = model.predict(out) == y
        result = x.clone()
        gen = generator(self.seed)
        for j in range(k):
            for restart in range(int(self.restarts)):
                idx = robust.nonzero().squeeze(1)
                if idx.numel() == 0:
                    return result
                adv, dist = self._run(model, x[idx], y[idx], targets[idx, j], threat, gen, restart > 0)
                broken = dist <= threat.eps
                result[idx[broken]] = threat.project(adv[broken], x[idx[broken]])
                robust[idx[broken]] = False
        return result

    def _run(self, model: Model, x0: torch.Tensor, y: torch.Tensor, t: torch.Tensor, threat: ThreatModel,
             gen: torch.Generator | None, random_start: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """One FAB run; the closest adversarial point found per example and its distance (inf if none)."""
        norm, (lo, hi) = threat.norm, threat.bounds
        n = x0.shape[0]
        flat0 = x0.reshape(n, -1)
        best = x0.clone()
        dist = x0.new_full((n,), float("inf"))
        x1 = self._random_start(x0, threat, gen) if random_start else x0.clone()

        def difference(o: torch.Tensor) -> torch.Tensor:
            s = model.scores(o)
            return s.gather(1, t.view(-1, 1)).squeeze(1) - s.gather(1, y.view(-1, 1)).squeeze(1)

        for _ in range(int(self.steps)):
            grad, out = self.gradient(model, x1, difference)
            f = difference(out)
            w = grad.reshape(n, -1)
            flat1 = x1.reshape(n, -1)
            b = (w * flat1).sum(dim=1) - f  # the linearised boundary w·z = b
            d = project_hyperplane(torch.cat([flat1, flat0]), torch.cat([w, w]), torch.cat([b, b]), lo, hi, norm)
            d1, d2 = d[:n], d[n:]
            a1 = flat_norm(d1, norm).clamp_min(1e-8)
            a2 = flat_norm(d2, norm).clamp_min(1e-8)
            alpha = (a1 / (a1 + a2)).clamp(0.0, float(self.alpha_max)).unsqueeze(1)
            flat1 = ((flat1 + self.eta * d1) * (1 - alpha) + (flat0 + self.eta * d2) * alpha).clamp(lo, hi)
            x1 = flat1.reshape(x0.shape)
            hit = model.predict(self.forward(model, x1)) != y
            size = flat_norm(x1 - x0, norm)
            closer = hit & (size < dist)
            best = torch.where(per_example(closer, x0), x1, best)
            dist = torch.where(closer, size, dist)
            x1 = torch.where(per_example(hit, x0), x0 + (x1 - x0) * self.beta, x1)
        return self._final_search(model, x0, y, best, dist, norm)

    def _random_start(self, x0: torch.Tensor, threat: ThreatModel, gen: torch.Generator | None) -> torch.Tensor:
        """The reference's restart point: ``x_0`` plus a random direction of norm eps / 2."""
        t = rand_like(x0, gen) * 2 - 1 if threat.norm == "linf" else randn_like(x0, gen)
        t = t / per_example(flat_norm(t, threat.norm).clamp_min(1e-12), t)
        return threat.clip_bounds(x0 + 0.5 * threat.eps * t)

    def _final_search(self, model: Model, x0: torch.Tensor, y: torch.Tensor, best: torch.Tensor,
                      dist: torch.Tensor, norm: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Bisection on ``[x_0, best]`` for the examples with an adversarial point."""
        found = torch.isfinite(dist)
        if int(self.final_search) == 0 or not bool(found.any()):
            return best, dist
        low = x0.new_zeros(x0.shape[0])  # fractions of the segment: low is clean, high adversarial
        high = x0.new_ones(x0.shape[0])
        for _ in range(int(self.final_search)):
            mid = (low + high) / 2
            xm = x0 + per_example(mid, x0) * (best - x0)
            hit = (model.predict(self.forward(model, xm)) != y) & found
            high = torch.where(hit, mid, high)
            low = torch.where(hit, low, mid)
        best = x0 + per_example(high, x0) * (best - x0)
        dist = torch.where(found, flat_norm(best - x0, norm), dist)
        return best, dist
