"""Helpers shared by the adversarial training defenses.

Adversarial examples are generated with the model in eval mode (so that the attack's
extra forward passes neither update batch-norm statistics nor draw dropout masks) and
on the bare module (never through a DistributedDataParallel wrapper, whose forward
would expect a parameter backward). Random draws are seeded by ``(seed, step)`` only,
so a resumed run repeats them exactly and, on several processes, every rank draws the
values of the whole global minibatch and keeps its own strided shard
(:func:`advframe.distributed.shard_positions`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from advframe import distributed
from advframe.defense import Defense
from advframe.distributed import unwrap
from advframe.engine import AttackSpec, craft_audited
from advframe.model import Model, eval_mode
from advframe.options import fixed_step_spec
from advframe.params import SEED_LIMIT
from advframe.ops import derive_seed
from advframe.threat import ThreatModel


def step_generator(seed: int, step: int, salt: int = 0) -> torch.Generator:
    """A CPU generator that depends only on ``(seed, step, salt)`` (exact resume, rank-free)."""
    return torch.Generator().manual_seed(derive_seed(seed, step, salt))


def truncated_half_normal(n: int, sigma: float, eps_max: float, generator: torch.Generator) -> torch.Tensor:
    """``n`` draws of ``|N(0, σ)|`` conditioned on ``[0, eps_max]`` (Kurakin et al. 2017, §3).

    Kurakin et al. draw ε per example as ``tf.abs(tf.truncated_normal(stddev=σ))``; TensorFlow
    truncates at 2σ, and their interval [0, 16] with σ = 8 is exactly that. Sampling by the
    inverse CDF: ``ε = σ·√2·erfinv(u·erf(ε_max / (σ√2)))`` with ``u ~ U(0, 1)``, which has
    the density of the half-normal restricted to ``[0, eps_max]`` for any ``eps_max``.
    ``sigma = 0`` gives ε = 0.
    """
    if sigma == 0 or eps_max == 0:
        return torch.zeros(n, dtype=torch.float64)
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    scale = sigma * math.sqrt(2.0)
    eps = scale * torch.erfinv(u * math.erf(eps_max / scale))
    return eps.clamp(0.0, eps_max)


def is_one_step(attack: Any) -> bool:
    """Whether ``attack`` declares the trait ``eps_free_direction`` (a one-step attack whose public
    ``direction(model, x, y, target)`` does not depend on ε, see :class:`advframe.Attack`)."""
    return getattr(attack, "eps_free_direction", False) is True


def attack_spec(name: str, **params: Any) -> AttackSpec:
    """A registered attack, built with ``params``, as the engine takes it; fixed steps
    (``early_exit=False``) unless ``params`` say otherwise: the training point is the
    adversary's last iterate of every example."""
    return fixed_step_spec(name, params)


def data_bounds(data: Any) -> tuple[float, float]:
    """The valid input range of the training data (default (0, 1))."""
    lo, hi = getattr(data, "bounds", (0.0, 1.0))
    return float(lo), float(hi)


def accuracy(outputs: torch.Tensor, y: torch.Tensor, model: Model) -> float:
    """Top-1 accuracy of ``outputs`` by the model's decision rule (NaN for an empty batch)."""
    if y.numel() == 0:
        return float("nan")
    with torch.no_grad():
        return float((model.predict(outputs.detach()) == y).float().mean())


#: PGD steps of the attack that measures held-out robustness after each epoch (step 2.5·ε/10).
MONITOR_STEPS = 10


class AdversarialDefense(Defense):
    """Base of the defenses that train on points an attack crafts in a ball of radius ``eps``.

    It declares the threat model from the ``eps`` (and ``norm``) parameters, watches
    held-out robustness with a seeded PGD of :data:`MONITOR_STEPS` steps of 2.5·ε/10
    (random start), and grows ε linearly over the first ``ramp_epochs`` epochs when it
    has that parameter (:meth:`ramp`): the ε warm-up of the recipes.
    """

    def threat_model(self, bounds: tuple[float, float]) -> ThreatModel:
        return ThreatModel(norm=self.params.get("norm", "linf"), eps=float(self.eps), bounds=bounds)

    def monitor(self) -> tuple[str, dict[str, Any]]:
        return "pgd", {"steps": MONITOR_STEPS, "random_start": True, "seed": 0}

    def setup(self, model: Model, data: Any, context: dict[str, Any]) -> None:
        self.bounds = data_bounds(data)
        self.seed = int(context.get("seed", 0))
        self.threat = context.get("threat") or self.threat_model(self.bounds)
        per_epoch = int(context.get("steps_per_epoch", 1) or 1)
        self.ramp_steps = int(round(float(self.params.get("ramp_epochs", 0.0)) * per_epoch))

    def ramp(self, step: int) -> float:
        """The fraction of ε used at training step ``step``: ``(step + 1) / ramp_steps``, 1 after the warm-up."""
        ramp_steps = getattr(self, "ramp_steps", 0)
        return 1.0 if ramp_steps <= 0 else min(1.0, (step + 1) / ramp_steps)

    def step_seed(self, step: int) -> int:
        """The seed of training step ``step``'s attack on this rank (a resume repeats it)."""
        rank, _ = distributed.rank_and_world()
        return derive_seed(self.seed, step, rank, below=SEED_LIMIT)  # an attack's seed parameter

    def ramped_threat(self, step: int) -> ThreatModel:
        """The threat model of training step ``step``: radius ε times :meth:`ramp`."""
        return self.threat.with_eps(self.threat.eps * self.ramp(step))

    def craft(self, model: Model, x: torch.Tensor, y: torch.Tensor, adversary: Callable[[int], AttackSpec],
              step: int) -> tuple[Model, torch.Tensor]:
        """The bare model and training step ``step``'s adversarial batch: ``adversary(step)`` at
        :meth:`ramped_threat`, crafted and audited by the engine with the model in eval mode."""
        core = unwrap(model)
        if not hasattr(self, "threat"):
            self.setup(model, None, {})
        with eval_mode(core):
            return core, craft_audited(core, x, y, adversary(step), self.ramped_threat(step))
