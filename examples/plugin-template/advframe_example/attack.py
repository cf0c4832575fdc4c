"""R+FGSM: a random sign step, then a gradient-sign step (Tramèr et al. 2018)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from advframe import Attack, ThreatModel
from advframe.errors import ParameterError


class RandomStartFGSM(Attack):
    """R+FGSM (Tramèr et al., *Ensemble Adversarial Training: Attacks and Defenses*, ICLR 2018, §4.1).

    A single-step Linf attack that first escapes the sharp curvature of the loss at the
    data point with a random step, then takes one gradient-sign step::

        x' = x + α · sign(N(0, I))
        x_adv = project(x' + (ε − α) · sign(∇x' L(x', y)))

    with ``α = alpha_fraction · ε`` (the paper uses α = ε/2). ``L`` is the model's own
    loss (``model.loss``); a targeted run descends the loss of the target class instead.
    One gradient evaluation per call. The random step draws from torch's global
    generator, so ``torch.manual_seed`` makes it reproducible.

    Norm: linf. Targetable: yes. Reads the true label: yes, in one step, so it declares
    ``leaks_labels``: the evaluator measures its predicted-label twin by default and the
    ``label_leaking`` check reads its runs (Kurakin et al. 2017, §4.2) — a trait is all
    it takes for a third-party attack to join advframe's checks.

    Args:
        alpha_fraction: α as a fraction of ε, in [0, 1) (default 0.5). 0 gives FGSM.
    """

    name: ClassVar[str] = "example_r_fgsm"
    summary: ClassVar[str] = "R+FGSM: random sign step of alpha, then gradient sign step of eps - alpha (Tramer 2018)"
    norms: ClassVar[tuple[str, ...]] = ("linf",)
    targetable: ClassVar[bool] = True
    uses_true_label: ClassVar[bool] = True
    leaks_labels: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {"alpha_fraction": 0.5}

    def validate(self) -> None:
        """Refuse an ``alpha_fraction`` outside [0, 1)."""
        if not 0.0 <= float(self.alpha_fraction) < 1.0:
            raise ParameterError(f"attack '{self.name}': alpha_fraction={self.alpha_fraction} must lie in [0, 1)")

    def perturb(self, model: Any, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                target: torch.Tensor | None) -> torch.Tensor:
        alpha = float(self.alpha_fraction) * threat.eps
        noise = torch.randn(x.shape, device=x.device, dtype=x.dtype).sign()
        start = threat.project(x + alpha * noise, x)
        grad, _ = self.objective_gradient(model, start, y, target)
        return threat.project(start + (threat.eps - alpha) * grad.sign(), x)
