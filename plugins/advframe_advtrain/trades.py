"""TRADES (Zhang, Yu, Jiao, Xing, El Ghaoui & Jordan, ICML 2019)."""

from __future__ import annotations

import torch

from advframe.engine import AttackSpec
from advframe.model import Model
from advframe.params import check_int, check_range
from advframe.threat import ThreatModel
from advframe_advtrain._common import AdversarialDefense, accuracy, attack_spec
from advframe_gradient.kl import kl_from


class TRADES(AdversarialDefense):
    """TRADES: ``min_θ E[ J(f(x), y) + β·max_{x′ ∈ B(x, ε)} KL(f(x) ‖ f(x′)) ]`` (Zhang et al. 2019, eq. (5)).

    ``J`` is the model's own loss, ``f`` the softmax of its class scores. ``x′`` is the
    registered ``pgd_kl`` attack (TRADES Algorithm 1: start at ``x + 0.001·N(0, I)``,
    ``steps`` signed steps of ``step_size`` up ``KL(f(x) ‖ f(x′))``, projected on the ball
    and the box) run on the current weights in eval mode, crafted and audited by the
    engine. The loss is differentiated through both ``f(x)`` and ``f(x′)``; clean and
    adversarial inputs go through one forward pass. ``steps + 1`` forward/backward passes
    per example.

    Args:
        beta: β, the weight of the robustness term (default 6, TRADES's CIFAR-10 value).
        eps: radius ε (default 0.3).
        steps: KL-PGD steps (default 10).
        step_size: KL-PGD step (default 0.075 = 2.5·ε/steps).
        norm: ``linf`` (default) or ``l2``.
        ramp_epochs: ε warm-up over the first epochs, as ``pgd_at`` (default 0: none).

    Presets: ``mnist`` (β 1, ε 0.3, 40 steps of 0.01: the paper's MNIST setting),
    ``cifar10`` (β 6, ε 0.031, 10 steps of 0.007). The recipe: 30 epochs of Adam at 1e-3
    with a cosine schedule, batch 64, 200 held-out digits, the best held-out epoch kept.
    """

    name = "trades"
    summary = "TRADES: CE(f(x), y) + beta * KL(f(x) || f(x')), x' by PGD on the KL (Zhang 2019)"
    defaults = {"beta": 6.0, "eps": 0.3, "steps": 10, "step_size": 0.075, "norm": "linf", "ramp_epochs": 0.0}
    presets = {"mnist": {"beta": 1.0, "eps": 0.3, "steps": 40, "step_size": 0.01},
               "cifar10": {"beta": 6.0, "eps": 0.031, "steps": 10, "step_size": 0.007}}
    recipe = {"epochs": 30, "batch_size": 64, "optimizer": "adam", "lr": 1e-3, "schedule": "cosine",
              "holdout": 200, "keep": "best"}

    def validate(self) -> None:
        owner = f"defense '{self.name}'"
        check_range(owner, beta=(self.beta, 0.0, float("inf")), eps=(self.eps, 0.0, float("inf")),
                    step_size=(self.step_size, 0.0, float("inf")), ramp_epochs=(self.ramp_epochs, 0.0, float("inf")))
        check_int(owner, "steps", self.steps, 1)
        ThreatModel(norm=self.norm, eps=float(self.eps))

    def adversary(self, step: int) -> AttackSpec:
        """The KL-PGD attack of training step ``step`` (seeded by seed, step and rank)."""
        return attack_spec("pgd_kl", steps=int(self.steps), step_size=float(self.step_size) * self.ramp(step),
                           seed=self.step_seed(step))

    def training_loss(self, model: Model, x: torch.Tensor, y: torch.Tensor, step: int
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        core, x_adv = self.craft(model, x, y, self.adversary, step)
        n = x.shape[0]
        outputs = model(torch.cat([x, x_adv]))
        natural = core.loss(outputs[:n], y)
        robust = kl_from(core.scores(outputs[:n]), core.scores(outputs[n:]))
        loss = natural.mean() + float(self.beta) * robust.mean()
        return loss, {"natural_loss": float(natural.mean().detach()), "kl": float(robust.mean().detach()),
                      "clean_acc": accuracy(outputs[:n], y, core), "adv_acc": accuracy(outputs[n:], y, core)}
