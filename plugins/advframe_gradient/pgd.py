"""Projected gradient descent with random start (Madry et al. 2018), linf and l2."""

from __future__ import annotations

import torch

from advframe.ops import random_start
from advframe.params import check_nonnegative, check_optional_int
from advframe.threat import ThreatModel
from advframe_gradient.loop import IterativeAttack


class PGD(IterativeAttack):
    """Projected gradient descent, PGD (Madry et al. 2018).

    ``x_0`` uniform in the eps-ball (linf: uniform per coordinate; l2: uniform in the
    ball), then ``x_{t+1} = Proj_{ball ∩ bounds}(x_t + step_size · s(∇x J(x_t, y)))`` with
    ``s = sign`` (linf) or ``g / ||g||_2`` (l2). Targeted: descends ``J(x, y_target)``.
    With several restarts, each example keeps the restart whose final point has the
    highest objective (loss of y, or minus loss of the target); this costs one
    forward query per restart (not a gradient evaluation). Under early exit the restarts
    run only on the examples not yet broken.

    Args:
        steps: iterations per restart (default 40, Madry's MNIST adversary).
        step_size: step in the input scale; ``None`` (default) = ``2.5 · eps / steps``.
        restarts: random restarts (default 1).
        random_start: start from a uniform point of the ball (default True) or from x.
        seed (int | None): seed of the random starts; ``None`` (default) uses torch's global RNG.
        loss (str): what the steps ascend: ``"model"`` (default, the model's own loss,
            cross-entropy for a plain classifier), ``"margin"`` (the Carlini–Wagner margin on
            ``model.scores``) or ``"dlr"`` (Croce & Hein's scale-invariant DLR; targeted DLR
            when targeted).
        early_exit (bool): stop on each example once its goal is met, keeping the best point
            (default True; see :mod:`advframe_gradient.loop`); False runs every step on every
            example, as the paper does and as adversarial training uses it.

    Presets: ``madry`` (steps 40, step_size 0.01: MNIST, eps 0.3), ``saito`` (Saito &
    Roy Table 2: eps_iter 0.01, nb_iter 40). Norms linf and l2; targetable; reads the
    true label; spends ``steps · restarts`` gradient evaluations per example (none for eps 0),
    fewer under early exit.
    """

    name = "pgd"
    summary = "Projected gradient descent with random start, linf or l2 (Madry 2018)"
    norms = ("linf", "l2")
    targetable = True
    uses_true_label = True
    unbounded_probe = True
    defaults = {"steps": 40, "step_size": None, "restarts": 1, "random_start": True, "seed": None, "loss": "model",
                "early_exit": True}
    presets = {"madry": {"steps": 40, "step_size": 0.01}, "saito": {"steps": 40, "step_size": 0.01}}

    def validate(self) -> None:
        super().validate()
        owner = f"attack '{self.name}'"
        check_optional_int(owner, "steps", self.steps, 0)
        check_optional_int(owner, "restarts", self.restarts, 1)
        check_nonnegative(owner, step_size=self.step_size)

    def schedule(self, threat: ThreatModel) -> tuple[float, int]:
        steps = int(self.steps)
        return (2.5 * threat.eps / max(steps, 1) if self.step_size is None else float(self.step_size)), steps

    def start(self, x: torch.Tensor, threat: ThreatModel, gen: torch.Generator | None) -> torch.Tensor:
        return random_start(x, threat, gen) if self.random_start else threat.clip_bounds(x)
