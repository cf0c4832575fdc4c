"""PGD adversarial training (Madry et al., ICLR 2018, §3–4)."""

from __future__ import annotations

from typing import Any

import torch

from advframe import distributed
from advframe.defense import Defense
from advframe.engine import AttackSpec, craft_audited
from advframe.model import Model
from advframe.params import check_int
from advframe.threat import ThreatModel
from advframe_advtrain._common import accuracy, attack_spec, check_range, data_bounds, eval_mode, unwrap


class PGDAdversarialTraining(Defense):
    """Madry et al. (2018) saddle-point training: ``min_θ E[max_{‖δ‖∞ ≤ ε} J(θ, x + δ, y)]``.

    The inner maximisation is approximated by the registered ``pgd`` attack (uniform
    random start in the ε-ball, ``steps`` signed-gradient steps of ``step_size``, projection
    onto the ball and the input box) run on the current weights; the outer minimisation
    takes an SGD step on the mean loss of the adversarial points only (Danskin's theorem).
    Costs ``steps + 1`` forward/backward passes per minibatch.

    Args:
        eps: radius ε (default 0.3, Madry's MNIST adversary).
        steps: PGD iterations (default 40; fewer, e.g. 7–10, for a CPU budget).
        step_size: PGD step (default 0.01, Madry's MNIST setting; with fewer steps use
            about ``2.5·eps/steps``).
        norm: ``linf`` (default) or ``l2``.
        random_start: start from a uniform point of the ball (default True).
        ramp_steps: warm-up: over the first ``ramp_steps`` training steps ε (and the PGD
            step) grow linearly from ε/ramp_steps to ε (default 0: no warm-up). From
            scratch, a network that sees ε = 0.3 PGD examples at once can stay at chance
            for epochs (measured: the adversarial-networks paper's D1 on mnist5k, loss ln 10 for 3 epochs with
            SGD or Adam); the ramp is the usual curriculum fix, not part of Madry et al.

    Random starts are seeded by ``(seed, step, rank)``, so a resumed run repeats them.
    Preset ``madry`` = (0.3, 40, 0.01); preset ``fast`` = (0.3, 10, 0.075) for CPUs.
    """

    name = "pgd_at"
    summary = "Madry min-max adversarial training against PGD with random start (Madry 2018)"
    defaults = {"eps": 0.3, "steps": 40, "step_size": 0.01, "norm": "linf", "random_start": True, "ramp_steps": 0}
    presets = {"madry": {"eps": 0.3, "steps": 40, "step_size": 0.01},
               "fast": {"eps": 0.3, "steps": 10, "step_size": 0.075}}

    def validate(self) -> None:
        owner = f"defense '{self.name}'"
        check_range(owner, eps=(self.eps, 0.0, float("inf")), step_size=(self.step_size, 0.0, float("inf")))
        check_int(owner, "steps", self.steps, 1)
        check_int(owner, "ramp_steps", self.ramp_steps, 0)
        ThreatModel(norm=self.norm, eps=float(self.eps))

    def threat_model(self, bounds: tuple[float, float]) -> ThreatModel:
        return ThreatModel(norm=self.norm, eps=float(self.eps), bounds=bounds)

    def setup(self, model: Model, data: Any, context: dict[str, Any]) -> None:
        self.bounds = data_bounds(data)
        self.seed = int(context.get("seed", 0))
        self.threat = context.get("threat") or self.threat_model(self.bounds)

    def ramp(self, step: int) -> float:
        """The fraction of ε used at training step ``step`` (1 after the warm-up)."""
        return 1.0 if self.ramp_steps <= 0 else min(1.0, (step + 1) / self.ramp_steps)

    def adversary(self, step: int) -> AttackSpec:
        """The PGD attack of training step ``step`` (its seed depends on seed, step and rank)."""
        rank, world = distributed.rank_and_world()
        seed = (self.seed * 1_000_003 + step * world + rank) % (2 ** 62)
        return attack_spec("pgd", steps=int(self.steps), step_size=float(self.step_size) * self.ramp(step),
                           random_start=bool(self.random_start), seed=seed)

    def training_loss(self, model: Model, x: torch.Tensor, y: torch.Tensor, step: int
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        core = unwrap(model)
        if not hasattr(self, "threat"):
            self.setup(model, None, {})
        with eval_mode(core):
            threat = self.threat.with_eps(self.threat.eps * self.ramp(step))
            x_adv = craft_audited(core, x, y, self.adversary(step), threat)
            with torch.no_grad():
                clean_acc = accuracy(core(x), y, core)
        outputs = model(x_adv)
        loss = core.loss(outputs, y).mean()
        return loss, {"clean_acc": clean_acc, "adv_acc": accuracy(outputs, y, core)}
