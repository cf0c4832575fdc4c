"""Fast adversarial training: FGSM from a random start (Wong, Rice & Kolter, ICLR 2020)."""

from __future__ import annotations

import torch

from advframe.engine import AttackSpec
from advframe.model import Model
from advframe.params import check_range
from advframe.threat import ThreatModel
from advframe_advtrain._common import AdversarialDefense, accuracy, attack_spec


class FastAdversarialTraining(AdversarialDefense):
    """Fast-AT (Wong, Rice & Kolter 2020, Algorithm 3): ``δ ~ U(−ε, ε)``, one step
    ``δ ← Proj_ε(δ + α·sign ∇_δ J(x + δ, y))``, then an optimiser step on ``J(x + δ, y)``.

    The step is the registered ``pgd`` attack with one step of ``α`` from its uniform
    random start, crafted and audited by the engine: two forward/backward passes per
    example, against ``steps + 1`` for ``pgd_at``. Wong et al. take α = 1.25·ε; FGSM
    training from the clean point, or with larger steps on their networks, overfits
    catastrophically: held-out PGD accuracy collapses within epochs while clean accuracy
    rises (their §4.2), so the recipe holds out 200 digits and stops on a collapse,
    keeping the best epoch.

    Args:
        eps: radius ε (default 0.3, Wong's MNIST setting).
        alpha_ratio: step α as a multiple of ε (default 1.25, Wong's α = 0.375 at ε 0.3).
        random_start: start from ``U(−ε, ε)`` (default True); False is plain FGSM training
            from ``x``, which Wong et al. show to overfit catastrophically.

    The recipe: Wong's MNIST schedule, a one-cycle learning rate (linear up to 5e-3 and
    down, Adam), here 40 epochs of batch 100 on the 4,000 mnist5k digits (Wong: 10
    epochs of the 60,000; 80 passes per digit, a quarter of ``pgd_at``'s recipe), with
    the collapse detector on.
    """

    name = "fast_at"
    summary = "Fast-AT: FGSM from a uniform random start, alpha = 1.25 eps, cyclic lr (Wong 2020)"
    defaults = {"eps": 0.3, "alpha_ratio": 1.25, "random_start": True}
    recipe = {"epochs": 40, "batch_size": 100, "optimizer": "adam", "lr": 5e-3, "schedule": "onecycle",
              "holdout": 200, "keep": "best", "stop_on_collapse": True}

    def validate(self) -> None:
        owner = f"defense '{self.name}'"
        check_range(owner, eps=(self.eps, 0.0, float("inf")), alpha_ratio=(self.alpha_ratio, 0.0, float("inf")))
        ThreatModel(norm="linf", eps=float(self.eps))

    def adversary(self, step: int) -> AttackSpec:
        """One signed step of ``α = alpha_ratio·ε`` from a uniform start in the ball (seeded by step and rank)."""
        return attack_spec("pgd", steps=1, step_size=float(self.alpha_ratio) * float(self.threat.eps),
                           random_start=bool(self.random_start), seed=self.step_seed(step))

    def training_loss(self, model: Model, x: torch.Tensor, y: torch.Tensor, step: int
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        core, x_adv = self.craft(model, x, y, self.adversary, step)
        outputs = model(x_adv)
        loss = core.loss(outputs, y).mean()
        return loss, {"adv_acc": accuracy(outputs, y, core)}
