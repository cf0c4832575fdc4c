"""Random-noise controls (Kurakin et al. 2017, Appendix A): perturbations with the
structure of FGSM but no gradient. They spend no gradient evaluation."""

from __future__ import annotations

import abc
import math

import torch

from advframe.attack import Attack
from advframe.model import Model
from advframe.ops import generator, rand_like, randn_like
from advframe.threat import ThreatModel

#: Truncation of the normal noise in units of its standard deviation: sigma = eps/2 on [-eps, eps].
TRUNCATION = 2.0


def truncated_normal(x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like ``x``, truncated to ``[-2, 2]`` (inverse-CDF sampling)."""
    lo = 0.5 * (1 + math.erf(-TRUNCATION / math.sqrt(2)))
    u = lo + (1 - 2 * lo) * rand_like(x, gen)
    return torch.special.ndtri(u).clamp(-TRUNCATION, TRUNCATION)


class _NoiseAttack(Attack, abc.ABC):
    norms = ("linf",)
    uses_true_label = False
    noise_baseline = True
    defaults = {"seed": None}

    @abc.abstractmethod
    def noise(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """Noise of unit linf size shaped like ``x``."""

    def perturb(self, model: Model, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                target: torch.Tensor | None) -> torch.Tensor:
        if threat.eps == 0:
            return threat.clip_bounds(x)
        return threat.project(x + threat.eps * self.noise(x, generator(self.seed)), x)


class RandSign(_NoiseAttack):
    """Sign of random perturbation (Kurakin et al. 2017, Appendix A).

    ``x_adv = clip(x + eps · sign(N(0, I)))``: FGSM-shaped noise. Norm linf; untargeted;
    does not read the label; no gradient evaluation.

    Args:
        seed (int | None): noise seed; ``None`` (default) uses torch's global RNG.
    """

    name = "rand_sign"
    summary = "Random-sign noise control: x + eps·sign(N(0, I)) (Kurakin 2017)"

    def noise(self, x, gen):
        return randn_like(x, gen).sign()


class RandNormal(_NoiseAttack):
    """Random truncated normal perturbation (Kurakin et al. 2017, Appendix A).

    ``x_adv = clip(x + T)`` with ``T`` i.i.d. per pixel, normal with mean 0 and standard
    deviation ``eps / 2`` truncated to ``[-eps, eps]``. Norm linf; untargeted; does not
    read the label; no gradient evaluation.

    Args:
        seed (int | None): noise seed; ``None`` (default) uses torch's global RNG.
    """

    name = "rand_normal"
    summary = "Truncated-normal noise control: sigma = eps/2 on [-eps, eps] (Kurakin 2017)"

    def noise(self, x, gen):
        return truncated_normal(x, gen) / TRUNCATION
