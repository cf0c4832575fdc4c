"""FGSM adversarial training (Goodfellow, Shlens & Szegedy, ICLR 2015, §6)."""

from __future__ import annotations

from typing import Any

import torch

from advframe.distributed import unwrap
from advframe.engine import craft_audited
from advframe.model import Model, eval_mode
from advframe.params import check_range
from advframe.threat import ThreatModel
from advframe_advtrain._common import AdversarialDefense, accuracy, attack_spec, data_bounds


class FGSMAdversarialTraining(AdversarialDefense):
    """Goodfellow et al. (2015) adversarial objective.

    ``J̃(θ, x, y) = α·J(θ, x, y) + (1 − α)·J(θ, x + ε·sign(∇ₓJ(θ, x, y)), y)``

    averaged over the minibatch, with ``J`` the model's own per-example loss
    (``model.loss``). The adversarial point is computed with the current weights and
    then held constant (no gradient flows through ``sign ∇ₓJ``), as in the authors'
    and cleverhans' implementations. The clean and adversarial halves go through ONE
    forward pass (a batch of 2m), so batch-norm sees both.

    Args:
        alpha: weight α of the clean loss (default 0.5, "in all experiments").
        eps: FGSM radius ε in the input scale (default 0.25, the value Goodfellow et al.
            used for MNIST in [0, 1]; the FGSM attack reads the TRUE label, so the trained
            model leaks labels, Kurakin et al. 2017 §4.2).

    Presets: ``goodfellow`` (α 0.5, ε 0.25), ``kurakin_leak`` (α 0.5, ε 0.3: the radius at
    which Kurakin et al. counted the most leaked labels on MNIST).
    """

    name = "fgsm_at"
    summary = "FGSM adversarial training: α·J(x) + (1-α)·J(x + ε·sign∇J) (Goodfellow 2015)"
    defaults = {"alpha": 0.5, "eps": 0.25}
    recipe = {"stop_on_collapse": True}  # one-step training: watched whenever a holdout is given
    presets = {"goodfellow": {"alpha": 0.5, "eps": 0.25}, "kurakin_leak": {"alpha": 0.5, "eps": 0.3}}

    def validate(self) -> None:
        owner = f"defense '{self.name}'"
        check_range(owner, alpha=(self.alpha, 0.0, 1.0), eps=(self.eps, 0.0, float("inf")))

    def threat_model(self, bounds: tuple[float, float]) -> ThreatModel:
        return ThreatModel(norm="linf", eps=float(self.eps), bounds=bounds)

    def setup(self, model: Model, data: Any, context: dict[str, Any]) -> None:
        self.bounds = data_bounds(data)
        self.threat = context.get("threat") or self.threat_model(self.bounds)
        self.attack = attack_spec("fgsm")

    def training_loss(self, model: Model, x: torch.Tensor, y: torch.Tensor, step: int
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        core = unwrap(model)
        if not hasattr(self, "attack"):
            self.setup(model, None, {})
        with eval_mode(core):
            x_adv = craft_audited(core, x, y, self.attack, self.threat)
        n = x.shape[0]
        outputs = model(torch.cat([x, x_adv]))
        per = core.loss(outputs, torch.cat([y, y]))
        clean_loss, adv_loss = per[:n].mean(), per[n:].mean()
        loss = self.alpha * clean_loss + (1.0 - self.alpha) * adv_loss
        return loss, {"clean_loss": float(clean_loss.detach()),
                      "adv_loss": float(adv_loss.detach()), "clean_acc": accuracy(outputs[:n], y, core),
                      "adv_acc": accuracy(outputs[n:], y, core)}
