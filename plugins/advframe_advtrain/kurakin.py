"""Mixed-batch adversarial training (Kurakin, Goodfellow & Bengio, ICLR 2017, Algorithm 1)."""

from __future__ import annotations

from typing import Any

import torch

from advframe import distributed
from advframe.distributed import unwrap
from advframe.engine import craft_audited_per_example
from advframe.errors import ParameterError
from advframe.model import Model, eval_mode
from advframe.params import check_int, check_range
from advframe.threat import ThreatModel
from advframe_advtrain._common import (AdversarialDefense, accuracy, attack_spec, data_bounds, is_one_step,
                                       step_generator, truncated_half_normal)


class MixedBatchAdversarialTraining(AdversarialDefense):
    """Kurakin et al. (2017) Algorithm 1 with the weighted loss of their §3.

    In each minibatch ``B = {X¹, …, Xᵐ}`` the first ``k`` examples are replaced by
    adversarial examples made from them with the CURRENT weights by a one-step attack,
    and the step minimises

        ``Loss = ( Σ_{i ∈ CLEAN} L(Xᵢ | yᵢ) + λ·Σ_{i ∈ ADV} L(Xᵢᵃᵈᵛ | yᵢ) ) / ((m − k) + λ·k)``

    with ``L`` the model's own per-example loss. Clean and adversarial examples go
    through ONE forward pass (the point of the algorithm for batch-norm networks).
    Each adversarial example gets its own ε drawn from ``|N(0, σ)|`` truncated to
    ``[0, eps_max]`` (§3: "tf.abs(tf.truncated_normal(stddev=8))" on [0, 16]); the
    one-step direction is computed ONCE at ``x`` and scaled per example, which is
    exactly the attack's output at each ε because the direction does not depend on ε.

    ``m`` is the training loop's minibatch size (Kurakin: 32). A last, smaller minibatch
    of ``n`` examples gets ``round(k·n/m)`` adversarial examples. On several processes
    the GLOBAL minibatch is the one of the algorithm: each rank holds the strided shard
    ``rank, rank + world, …`` of it, makes adversarial examples for its own members of
    the first ``k`` positions, and draws ε for all positions from the same ``(seed, step)``
    generator, so the step equals the one-process step.

    Args:
        k: adversarial examples per minibatch of ``m`` (default 16 of 32).
        lam: weight λ of the adversarial examples (default 0.3).
        attack: registry name of the one-step generating method (default ``step_ll``;
            ``step_rnd``, ``fgsm_pred``, ``fgsm``, ``fast_entropy``, ... — ``fgsm`` reads the
            true label and makes the model leak labels, §4.2).
        sigma: σ of the underlying normal of ε, input scale (default 8/255, ImageNet).
        eps_max: upper end of the truncation interval (default 16/255).
        delay: number of initial steps trained on clean minibatches only (default 0).

    Presets: ``imagenet`` (σ 8/255, ε_max 16/255, Kurakin's values on [0, 1] inputs);
    ``mnist`` (σ 0.15, ε_max 0.3, for MNIST in [0, 1]).
    """

    name = "mixed_batch"
    summary = "Kurakin Algorithm 1: k of m examples one-step adversarial, loss weighted by λ (Kurakin 2017)"
    defaults = {"k": 16, "lam": 0.3, "attack": "step_ll", "sigma": 8 / 255, "eps_max": 16 / 255, "delay": 0}
    recipe = {"stop_on_collapse": True}  # one-step training: watched whenever a holdout is given
    presets = {"imagenet": {"sigma": 8 / 255, "eps_max": 16 / 255},
               "mnist": {"sigma": 0.15, "eps_max": 0.3}}

    def validate(self) -> None:
        owner = f"defense '{self.name}'"
        for key in ("k", "delay"):
            check_int(owner, key, getattr(self, key), 0)
        check_range(owner, lam=(self.lam, 0.0, float("inf")), sigma=(self.sigma, 0.0, float("inf")),
                    eps_max=(self.eps_max, 0.0, float("inf")))

    def threat_model(self, bounds: tuple[float, float]) -> ThreatModel:
        """Per-example radii are drawn up to ``eps_max``: the linf ball of that radius."""
        return ThreatModel(norm="linf", eps=float(self.eps_max), bounds=bounds)

    def setup(self, model: Model, data: Any, context: dict[str, Any]) -> None:
        self.bounds = data_bounds(data)
        self.threat = self.threat_model(self.bounds)
        self.seed = int(context.get("seed", 0))
        self.m = int(context.get("batch_size", 0)) or None
        if self.m is not None and self.k > self.m:
            raise ParameterError(f"defense '{self.name}': k={self.k} adversarial examples do not fit in a "
                                 f"minibatch of {self.m}: lower k or raise --batch-size")
        self.generator = attack_spec(str(self.attack))
        if not is_one_step(self.generator.attack):
            raise ParameterError(f"defense '{self.name}': attack '{self.attack}' is not a one-step attack; "
                                 f"Algorithm 1 uses one-step methods (step_ll, step_rnd, fgsm_pred, fgsm, ...)")

    def adversarial_count(self, n_global: int, step: int) -> int:
        """``k`` for a full minibatch, ``round(k·n/m)`` for a smaller one, 0 during ``delay``."""
        if step < self.delay or n_global == 0:
            return 0
        m = self.m or n_global
        k = self.k if n_global >= m else int(round(self.k * n_global / m))
        return min(k, n_global)

    def split(self, n_local: int, step: int) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        """``(adversarial mask, eps of the adversarial examples, n_global, k_global)`` of this shard."""
        rank, world = distributed.rank_and_world()
        n_global = distributed.global_count(n_local)
        k_global = self.adversarial_count(n_global, step)
        positions = distributed.shard_positions(n_local, rank, world)
        mask = positions < k_global
        eps_all = truncated_half_normal(k_global, float(self.sigma), float(self.eps_max),
                                        step_generator(self.seed, step))
        return mask, eps_all[positions[mask]], n_global, k_global

    def training_loss(self, model: Model, x: torch.Tensor, y: torch.Tensor, step: int
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        core = unwrap(model)
        if not hasattr(self, "generator"):
            self.setup(model, None, {})
        n = x.shape[0]
        mask, eps, n_global, k_global = self.split(n, step)
        mask = mask.to(x.device)
        mixed = x.detach().clone()
        if bool(mask.any()):
            with eval_mode(core):
                mixed[mask] = craft_audited_per_example(core, x[mask], y[mask], self.generator,
                                                        self.threat, eps)
        outputs = model(mixed)
        per = core.loss(outputs, y)
        weights = torch.where(mask, torch.full_like(per, float(self.lam)), torch.ones_like(per))
        denominator = (n_global - k_global) + float(self.lam) * k_global
        if denominator == 0:
            raise ParameterError(f"defense '{self.name}': every example is adversarial and lam = 0, so the "
                                 f"loss has no weight: raise lam or lower k")
        # mean over the shard of terms whose mean over the global minibatch is the formula
        loss = (weights * per).sum() * (n_global / max(n, 1)) / denominator
        stats = {"adv_examples": float(mask.sum())}
        if bool((~mask).any()):
            stats["clean_acc"] = accuracy(outputs[~mask], y[~mask], core)
        if bool(mask.any()):
            stats["adv_acc"] = accuracy(outputs[mask], y[mask], core)
            stats["eps_mean"] = float(eps.mean())
        return loss, stats
