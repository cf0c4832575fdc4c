"""Szegedy et al.'s box-constrained L-BFGS attack."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from advframe.attack import Attack
from advframe.model import Model
from advframe.threat import ThreatModel
from advframe_optim._box import check_params, from_tanh_space, runner_up, sq_l2, to_tanh_space


class LBFGSAttack(Attack):
    """The L-BFGS attack of Szegedy et al. (*Intriguing properties of neural networks*,
    ICLR 2014), as written in Saito & Roy §2.3:

    ``minimise  c · ‖x̃ − x‖²₂ + L(x̃, t)   subject to  x̃ ∈ [lo, hi]ⁿ``

    where ``L`` is the model's own per-example training loss ``model.loss`` (cross-entropy
    for a logits classifier, MSE to the target codeword for a codeword model — the
    white-box adaptation of Saito & Roy §4.4) and ``t`` the target class. The box is
    enforced by the tanh change of variables ``x̃ = lo + (hi − lo) · (tanh(w) + 1) / 2``
    (no scipy L-BFGS-B), and ``w`` is optimised with ``torch.optim.LBFGS`` (strong-Wolfe
    line search, at most ``max_iterations`` iterations per round, ``history_size``
    curvature pairs) on the batch sum, which is separable per example.

    ``c`` weighs the *distance*: a larger ``c`` gives a smaller perturbation. It starts at
    ``initial_const`` and a per-example binary search over ``binary_search_steps``
    rounds raises it after a success (halfway to the smallest failing ``c``, or ×10 while
    none has failed) and lowers it after a failure. The attack returns the successful
    round's result with the smallest L2 distance; an example never moved to its target is
    returned unchanged (``x``). The result is passed through ``threat.project``: a
    perturbation longer than ``threat.eps`` is scaled back onto the ball and may no longer
    reach the target.

    Targeting: the attack is targeted by nature (Szegedy et al.; Saito & Roy use it only
    targeted). Called untargeted, it targets the *runner-up* class — the highest-scoring
    class other than the true label ``y`` at ``x`` — which is the cheapest wrong class
    to reach; so untargeted mode reads the true label.

    Norm: ``l2``. Gradient evaluations: one per objective evaluation (each L-BFGS
    iteration and line-search trial is one forward+backward pass over the batch).

    Defaults: ``binary_search_steps=5``, ``max_iterations=1000``, ``initial_const=0.01``,
    ``history_size=10``. Preset ``saito`` (Saito & Roy Table 2): 5 binary-search steps,
    1,000 iterations; ``c`` is the parameter swept in their Table 1.
    """

    name: ClassVar[str] = "lbfgs"
    summary: ClassVar[str] = "Szegedy L-BFGS: c*||d||^2 + loss(x+d, t), box by tanh, binary search on c"
    norms: ClassVar[tuple[str, ...]] = ("l2",)
    targetable: ClassVar[bool] = True
    uses_true_label: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {
        "binary_search_steps": 5,
        "max_iterations": 1000,
        "initial_const": 0.01,
        "history_size": 10,
    }
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "saito": {"binary_search_steps": 5, "max_iterations": 1000},
    }

    def validate(self) -> None:
        """Check the merged parameters."""
        check_params(self.name, self.params, at_least={"binary_search_steps": 1, "max_iterations": 1,
                                                       "history_size": 1},
                     positive=("initial_const",))

    def minimise(self, model: Model, x: torch.Tensor, target: torch.Tensor, const: torch.Tensor,
                 bounds: tuple[float, float]) -> torch.Tensor:
        """One round: the minimiser of ``c · ‖x̃ − x‖² + L(x̃, t)`` found by L-BFGS."""
        w = to_tanh_space(x, bounds).requires_grad_(True)
        optimizer = torch.optim.LBFGS([w], lr=1.0, max_iter=int(self.max_iterations),
                                      history_size=int(self.history_size),
                                      tolerance_grad=1e-9, tolerance_change=1e-12,
                                      line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            with torch.enable_grad():
                x_new = from_tanh_space(w, bounds)
                total = (const * sq_l2(x_new - x) + model.loss(model(x_new), target)).sum()
                (grad,) = torch.autograd.grad(total, w)
            self.gradient_evaluations += 1
            w.grad = grad
            return total.detach()

        optimizer.step(closure)
        return from_tanh_space(w.detach(), bounds)

    def perturb(self, model: Model, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                target: torch.Tensor | None) -> torch.Tensor:
        """Run the attack; see the class docstring."""
        if target is None:
            with torch.no_grad():
                target = runner_up(model.scores(model(x)), y.to(x.device).long())
        target = target.to(x.device).long()
        n = x.shape[0]
        lower = torch.zeros(n, device=x.device)
        upper = torch.full((n,), math.inf, device=x.device)
        const = torch.full((n,), float(self.initial_const), device=x.device)
        best_l2 = torch.full((n,), math.inf, device=x.device)
        best_adv = x.clone()

        for _ in range(int(self.binary_search_steps)):
            x_new = self.minimise(model, x, target, const, threat.bounds)
            with torch.no_grad():
                success = model.predict(model(x_new)) == target
                l2 = sq_l2(x_new - x)
                improved = success & (l2 < best_l2)
                best_l2 = torch.where(improved, l2, best_l2)
                best_adv[improved] = x_new[improved]
            # success: weigh the distance more (larger c); failure: less
            lower = torch.where(success, torch.maximum(lower, const), lower)
            upper = torch.where(success, upper, torch.minimum(upper, const))
            const = torch.where(torch.isfinite(upper), (lower + upper) / 2, const * 10)

        return threat.project(best_adv, x).detach()
