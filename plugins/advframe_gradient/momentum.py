"""Momentum iterative method (Dong et al. 2018), linf and l2."""

from __future__ import annotations

import torch

from advframe.ops import normalized, steepest
from advframe.params import check_nonnegative, check_optional_int
from advframe.threat import ThreatModel
from advframe_gradient.loop import IterativeAttack


class MIM(IterativeAttack):
    """Momentum iterative method, MI-FGSM (Dong et al., CVPR 2018; used by Saito & Roy).

    ``g_{t+1} = mu · g_t + ∇x J(x_t, y) / ||∇x J(x_t, y)||_1`` (L1 norm per example),
    ``x_{t+1} = Proj_{ball ∩ bounds}(x_t + step_size · s(g_{t+1}))`` with ``s = sign``
    (linf) or ``g / ||g||_2`` (l2), starting at ``x_0 = x``. Targeted: the gradient of
    ``-J(x, y_target)`` is accumulated instead.

    Args:
        steps: iterations (default 10).
        step_size: step in the input scale; ``None`` (default) = ``eps / steps`` (Dong et al.).
        decay: momentum decay mu (default 1.0).
        loss (str): what the steps ascend: ``"model"`` (default, the model's own loss,
            cross-entropy for a plain classifier), ``"margin"`` (the Carlini–Wagner margin on
            ``model.scores``) or ``"dlr"`` (Croce & Hein's scale-invariant DLR; targeted DLR
            when targeted).
        early_exit (bool): stop on each example once its goal is met, keeping the best point
            (default True; see :mod:`advframe_gradient.loop`); False runs every step on every
            example, as the paper does and as adversarial training uses it.

    Presets: ``saito`` (Saito & Roy Table 2: eps_iter 0.06, nb_iter 10). Norms linf and
    l2; targetable; reads the true label; spends ``steps`` gradient evaluations per example
    (none for eps 0), fewer under early exit.
    """

    name = "mim"
    summary = "Momentum iterative method: sign steps along L1-normalised gradient momentum (Dong 2018)"
    norms = ("linf", "l2")
    targetable = True
    uses_true_label = True
    defaults = {"steps": 10, "step_size": None, "decay": 1.0, "loss": "model", "early_exit": True}
    presets = {"saito": {"steps": 10, "step_size": 0.06}}

    def validate(self) -> None:
        super().validate()
        owner = f"attack '{self.name}'"
        check_optional_int(owner, "steps", self.steps, 0)
        check_nonnegative(owner, step_size=self.step_size, decay=self.decay)

    def schedule(self, threat: ThreatModel) -> tuple[float, int]:
        steps = int(self.steps)
        return (threat.eps / max(steps, 1) if self.step_size is None else float(self.step_size)), steps

    def init_state(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)

    def direction(self, g: torch.Tensor, state: torch.Tensor, threat: ThreatModel) -> torch.Tensor:
        state.mul_(self.decay).add_(normalized(g, "l1"))
        return steepest(state, threat.norm)
