"""PGD on the KL divergence from the clean prediction: the inner maximisation of TRADES
(Zhang et al., *Theoretically Principled Trade-off between Robustness and Accuracy*, ICML 2019)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from advframe.model import Model
from advframe.ops import generator, randn_like
from advframe.params import check_nonnegative, check_optional_int
from advframe.threat import ThreatModel
from advframe_gradient.loop import IterativeAttack


def kl_from(reference: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """``KL(softmax(reference) ‖ softmax(scores))`` per example (the TRADES regulariser).

    Args:
        reference: class scores at the clean inputs, ``(n, classes)``.
        scores: class scores at the perturbed inputs, ``(n, classes)``.
    """
    log_p = F.log_softmax(reference, dim=1)
    return (log_p.exp() * (log_p - F.log_softmax(scores, dim=1))).sum(dim=1)


class PGDKL(IterativeAttack):
    """PGD ascending ``KL(f(x) ‖ f(x′))``, started at ``x + init_std·N(0, I)`` (TRADES, Alg. 1).

    ``f`` is the softmax of the model's class scores (``model.scores``). The clean scores
    are computed once (one forward query) and held fixed; then ``steps`` steps
    ``x′ ← Proj_{ball ∩ bounds}(x′ + step_size · s(∇ KL))`` with ``s = sign`` (linf) or
    ``g / ||g||_2`` (l2). The start is projected into the ball and the bounds too. It
    never reads the label: the point moves the prediction, whatever the class.

    Args:
        steps: iterations (default 10, TRADES's CIFAR-10 setting).
        step_size: step in the input scale; ``None`` (default) = ``2.5 · eps / steps``.
        init_std: standard deviation of the Gaussian start (default 0.001, TRADES).
        seed (int | None): seed of the start; ``None`` (default) uses torch's global RNG.

    Presets: ``trades_mnist`` (40 steps of 0.01, TRADES at MNIST ε 0.3),
    ``trades_cifar10`` (10 steps of 0.007, TRADES at CIFAR-10 ε 0.031). Spends exactly
    ``steps`` gradient evaluations and one forward query (none for eps 0).
    """

    name = "pgd_kl"
    summary = "PGD on KL(f(x) || f(x')) from x + 0.001*N(0, I), TRADES's inner maximisation (Zhang 2019)"
    norms = ("linf", "l2")
    targetable = False
    uses_true_label = False
    defaults = {"steps": 10, "step_size": None, "init_std": 0.001, "seed": None}
    presets = {"trades_mnist": {"steps": 40, "step_size": 0.01},
               "trades_cifar10": {"steps": 10, "step_size": 0.007}}

    def validate(self) -> None:
        owner = f"attack '{self.name}'"
        check_optional_int(owner, "steps", self.steps, 0)
        check_nonnegative(owner, step_size=self.step_size, init_std=self.init_std)

    def schedule(self, threat: ThreatModel) -> tuple[float, int]:
        steps = int(self.steps)
        return (2.5 * threat.eps / max(steps, 1) if self.step_size is None else float(self.step_size)), steps

    def start(self, x: torch.Tensor, threat: ThreatModel, gen: torch.Generator | None) -> torch.Tensor:
        return threat.project(x + float(self.init_std) * randn_like(x, gen), x)

    def perturb(self, model: Model, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                target: torch.Tensor | None) -> torch.Tensor:
        if threat.eps == 0:
            return threat.clip_bounds(x)
        size, steps = self.schedule(threat)
        reference = model.scores(self.forward(model, x)).detach()
        return self.run(model, x, threat, lambda out: kl_from(reference, model.scores(out)), size, steps,
                        generator(self.seed))
