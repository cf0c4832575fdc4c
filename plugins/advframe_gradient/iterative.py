"""Kurakin's iterative attacks (Kurakin et al. 2017, §2.2): "iter. basic" (BIM) and
"iter. l.l.", with the α = 1 pixel, ``min(eps + 4, 1.25 eps)`` schedule."""

from __future__ import annotations

import torch

from advframe.attack import Objective
from advframe.model import Model
from advframe.params import check_nonnegative, check_optional_int
from advframe.threat import ThreatModel
from advframe_gradient._ops import kurakin_steps, pixel
from advframe_gradient.loop import IterativeAttack


class _KurakinIterative(IterativeAttack):
    """Shared schedule and validation of ``iter_basic`` and ``iter_ll``."""

    norms = ("linf",)
    defaults = {"alpha": None, "steps": None, "early_exit": True}
    step_size_param = "alpha"

    def validate(self) -> None:
        super().validate()
        check_nonnegative(f"attack '{self.name}'", alpha=self.alpha)
        check_optional_int(f"attack '{self.name}'", "steps", self.steps, 0)

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
        alpha (float | None): step size in the input scale; ``None`` (default) = one pixel, ``(hi - lo)/255``.
        steps (int | None): iterations; ``None`` (default) = ``floor(min(eps + 4, 1.25 eps))`` with eps
            in pixels of ``(hi - lo)/255`` (at least 1 for eps > 0).
        loss (str): what the steps ascend: ``"model"`` (default, the model's own loss,
            cross-entropy for a plain classifier), ``"margin"`` (the Carlini–Wagner margin on
            ``model.scores``) or ``"dlr"`` (Croce & Hein's scale-invariant DLR; targeted DLR
            when targeted).
        early_exit (bool): stop on each example once its goal is met, keeping the best point
            (default True; see :mod:`advframe_gradient.loop`); False runs every step on every
            example, as the paper does and as adversarial training uses it.

    Presets: ``saito`` (Saito & Roy, Table 2: eps_iter 0.05, nb_iter 10). Norm linf;
    targetable; reads the true label; spends ``steps`` gradient evaluations per example
    (none for eps 0), fewer under early exit. Its one-step counterpart is fgsm.
    """

    name = "iter_basic"
    aliases = ("bim",)
    summary = "Basic iterative method (BIM): repeated FGSM steps of 1 pixel, clipped (Kurakin 2017)"
    targetable = True
    uses_true_label = True
    one_step_counterpart = "fgsm"
    unbounded_probe = True
    defaults = {**_KurakinIterative.defaults, "loss": "model"}
    presets = {"saito": {"alpha": 0.05, "steps": 10}, "kurakin": {"alpha": None, "steps": None}}


class IterLL(_KurakinIterative):
    """Iterative least-likely class method, "iter. l.l." (Kurakin et al. 2017, §2.2).

    ``X_0 = X``, ``X_{N+1} = Clip_{X,eps}{X_N - alpha · sign(∇x J(X_N, y_LL))}`` with
    ``y_LL = argmin model.scores(model(X))`` of the CLEAN input, read off the first
    step's forward pass (no extra pass).

    Args:
        alpha (float | None): step size; ``None`` (default) = one pixel, ``(hi - lo)/255``.
        steps (int | None): iterations; ``None`` (default) = ``floor(min(eps + 4, 1.25 eps))``, eps in pixels.
        early_exit (bool): stop on each example once it is classified as its least-likely class,
            keeping the best point (default True; see :mod:`advframe_gradient.loop`); False runs
            every step on every example, as the paper does and as adversarial training uses it.

    Norm linf; picks its own target, so not targetable by the caller; does not read the
    true label; spends ``steps`` gradient evaluations per example (none for eps 0), fewer
    under early exit, whose goal is the attack's own, y_LL (reading no label; on an example
    classified correctly it implies misclassification). Its one-step counterpart is step_ll.
    """

    name = "iter_ll"
    summary = "Iterative least-likely class method: 1-pixel steps toward y_LL (Kurakin 2017)"
    uses_true_label = False
    one_step_counterpart = "step_ll"

    def own_target(self, model: Model, clean_outputs: torch.Tensor) -> torch.Tensor | None:
        """The least-likely class of the clean input: the goal under early exit."""
        return model.scores(clean_outputs).argmin(dim=1)

    def objective(self, model: Model, y: torch.Tensor, target: torch.Tensor | None) -> Objective:
        """Minus the loss of the least-likely class, latched at the first step's outputs."""
        least_likely: list[torch.Tensor] = []

        def toward_least_likely(out: torch.Tensor) -> torch.Tensor:
            if not least_likely:
                least_likely.append(model.scores(out.detach()).argmin(dim=1))
            return -model.loss(out, least_likely[0])

        return toward_least_likely
