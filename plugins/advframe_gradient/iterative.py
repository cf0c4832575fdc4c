"""Kurakin's iterative attacks (Kurakin et al. 2017, §2.2): "iter. basic" (BIM) and
"iter. l.l.", with the α = 1 pixel, ``min(eps + 4, 1.25 eps)`` schedule."""

from __future__ import annotations

from typing import Any

import torch

from advframe.attack import Attack
from advframe.threat import ThreatModel
from advframe_gradient._ops import check_int, check_nonnegative, gradient_of, kurakin_steps, pixel


class _KurakinIterative(Attack):
    """Shared schedule and validation of ``iter_basic`` and ``iter_ll``."""

    norms = ("linf",)
    defaults = {"alpha": None, "steps": None}

    def validate(self) -> None:
        check_nonnegative(f"attack '{self.name}'", alpha=self.alpha)
        check_int(f"attack '{self.name}'", "steps", self.steps, 0)

    def schedule(self, threat: ThreatModel) -> tuple[float, int]:
        """``(alpha, steps)`` for ``threat``: the given values, or Kurakin's schedule for ``None``.

        alpha defaults to one pixel, ``(hi - lo) / 255``; steps to
        :func:`advframe_gradient._ops.kurakin_steps` (floor of ``min(eps + 4, 1.25 eps)``
        with eps in pixels).
        """
        alpha = pixel(threat) if self.alpha is None else float(self.alpha)
        steps = kurakin_steps(threat.eps, threat.bounds) if self.steps is None else int(self.steps)
        return alpha, steps


class IterBasic(_KurakinIterative):
    """Basic iterative method, "iter. basic" / BIM (Kurakin et al. 2017, §2.2).

    ``X_0 = X``, ``X_{N+1} = Clip_{X,eps}{X_N + alpha · sign(∇x J(X_N, y_true))}``, clipped
    to the bounds after every step. Targeted: ``X_N - alpha · sign(∇x J(X_N, y_target))``.

    Args:
        alpha: step size in the input scale; ``None`` (default) = one pixel, ``(hi - lo)/255``.
        steps: iterations; ``None`` (default) = ``floor(min(eps + 4, 1.25 eps))`` with eps
            in pixels of ``(hi - lo)/255`` (at least 1 for eps > 0).

    Presets: ``saito`` (Saito & Roy, Table 2: eps_iter 0.05, nb_iter 10). Norm linf;
    targetable; reads the true label; spends exactly ``steps`` gradient evaluations
    (none for eps 0).
    """

    name = "iter_basic"
    aliases = ("bim",)
    summary = "Basic iterative method (BIM): repeated FGSM steps of 1 pixel, clipped (Kurakin 2017)"
    targetable = True
    uses_true_label = True
    presets = {"saito": {"alpha": 0.05, "steps": 10}, "kurakin": {"alpha": None, "steps": None}}

    def perturb(self, model: Any, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                target: torch.Tensor | None) -> torch.Tensor:
        alpha, steps = self.schedule(threat)
        x_adv = threat.clip_bounds(x)
        if threat.eps == 0:
            return x_adv
        for _ in range(steps):
            g, _ = self.objective_gradient(model, x_adv, y, target)
            x_adv = threat.project(x_adv + alpha * g.sign(), x)
        return x_adv


class IterLL(_KurakinIterative):
    """Iterative least-likely class method, "iter. l.l." (Kurakin et al. 2017, §2.2).

    ``X_0 = X``, ``X_{N+1} = Clip_{X,eps}{X_N - alpha · sign(∇x J(X_N, y_LL))}`` with
    ``y_LL = argmin model.scores(model(X))`` of the CLEAN input, read off the first
    step's forward pass (no extra pass).

    Args:
        alpha: step size; ``None`` (default) = one pixel, ``(hi - lo)/255``.
        steps: iterations; ``None`` (default) = ``floor(min(eps + 4, 1.25 eps))``, eps in pixels.

    Norm linf; picks its own target, so not targetable by the caller; does not read the
    true label; spends exactly ``steps`` gradient evaluations (none for eps 0).
    """

    name = "iter_ll"
    summary = "Iterative least-likely class method: 1-pixel steps toward y_LL (Kurakin 2017)"
    uses_true_label = False

    def perturb(self, model: Any, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                target: torch.Tensor | None) -> torch.Tensor:
        alpha, steps = self.schedule(threat)
        x_adv = threat.clip_bounds(x)
        if threat.eps == 0 or steps == 0:
            return x_adv
        labels: list[torch.Tensor] = []

        def toward_least_likely(out: torch.Tensor) -> torch.Tensor:
            labels.append(model.scores(out.detach()).argmin(dim=1))
            return -model.loss(out, labels[0])

        g, _ = gradient_of(self, model, x_adv, toward_least_likely)
        x_adv = threat.project(x_adv + alpha * g.sign(), x)
        for _ in range(steps - 1):
            g, _ = self.objective_gradient(model, x_adv, y, labels[0])
            x_adv = threat.project(x_adv + alpha * g.sign(), x)
        return x_adv
