"""PGD adversarial training (Madry et al., ICLR 2018, §3–4)."""

from __future__ import annotations

import torch

from advframe.engine import AttackSpec
from advframe.model import Model, eval_mode
from advframe.params import check_int, check_range
from advframe.threat import ThreatModel
from advframe_advtrain._common import AdversarialDefense, accuracy, attack_spec


class PGDAdversarialTraining(AdversarialDefense):
    """Madry et al. (2018) saddle-point training: ``min_θ E[max_{‖δ‖∞ ≤ ε} J(θ, x + δ, y)]``.

    The inner maximisation is approximated by the registered ``pgd`` attack (uniform
    random start in the ε-ball, ``steps`` signed-gradient steps of ``step_size``, projection
    onto the ball and the input box) run on the current weights; the outer minimisation
    takes an optimiser step on the mean loss of the adversarial points only (Danskin's
    theorem). Costs ``steps + 1`` forward/backward passes per example.

    Args:
        eps: radius ε (default 0.3, Madry's MNIST adversary).
        steps: PGD iterations (default 10; Madry's 40 in preset ``madry``).
        step_size: PGD step (default 0.075 = 2.5·ε/steps; Madry's 0.01 in preset ``madry``).
        norm: ``linf`` (default) or ``l2``.
        random_start: start from a uniform point of the ball (default True).
        ramp_epochs: ε warm-up: over the first ``ramp_epochs`` epochs ε (and the PGD step)
            grow linearly from ε/ramp_steps to ε (default 10). From scratch, a network that
            sees ε = 0.3 PGD examples at once can stay at chance for epochs (measured: loss
            ln 10 after 5 epochs on mnist5k); the warm-up is the usual curriculum fix, not
            part of Madry et al.

    The recipe (``advframe train --defense pgd_at`` with nothing else): 30 epochs of Adam at
    a constant 1e-3, batch 64, 200 held-out digits, the best held-out epoch kept
    (measured against a cosine schedule in docs/defenses/pgd_at.md). Random starts are seeded by ``(seed, step, rank)``, so a resumed run repeats
    them. Preset ``madry`` = (0.3, 40, 0.01); preset ``fast`` = (0.3, 10, 0.075).
    """

    name = "pgd_at"
    summary = "Madry min-max adversarial training against PGD with random start (Madry 2018)"
    defaults = {"eps": 0.3, "steps": 10, "step_size": 0.075, "norm": "linf", "random_start": True,
                "ramp_epochs": 10.0}
    presets = {"madry": {"eps": 0.3, "steps": 40, "step_size": 0.01},
               "fast": {"eps": 0.3, "steps": 10, "step_size": 0.075}}
    recipe = {"epochs": 30, "batch_size": 64, "optimizer": "adam", "lr": 1e-3, "schedule": "none",
              "holdout": 200, "keep": "best"}

    def validate(self) -> None:
        owner = f"defense '{self.name}'"
        check_range(owner, eps=(self.eps, 0.0, float("inf")), step_size=(self.step_size, 0.0, float("inf")),
                    ramp_epochs=(self.ramp_epochs, 0.0, float("inf")))
        check_int(owner, "steps", self.steps, 1)
        ThreatModel(norm=self.norm, eps=float(self.eps))

    def adversary(self, step: int) -> AttackSpec:
        """The PGD attack of training step ``step`` (its seed depends on seed, step and rank)."""
        return attack_spec("pgd", steps=int(self.steps), step_size=float(self.step_size) * self.ramp(step),
                           random_start=bool(self.random_start), seed=self.step_seed(step))

    def training_loss(self, model: Model, x: torch.Tensor, y: torch.Tensor, step: int
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        core, x_adv = self.craft(model, x, y, self.adversary, step)
        with eval_mode(core), torch.no_grad():
            clean_acc = accuracy(core(x), y, core)
        outputs = model(x_adv)
        loss = core.loss(outputs, y).mean()
        return loss, {"clean_acc": clean_acc, "adv_acc": accuracy(outputs, y, core)}
