"""The one iterative loop of the gradient attacks (after foolbox 3's ``BaseGradientDescent.run``).

``x_0 = start(x)``; then ``steps`` times: ``g = ∇ objective(x_t)``, ``d = direction(g)``,
``x_{t+1} = Proj_{ball ∩ bounds}(x_t + size · d)``. pgd, iter_basic, iter_ll and mim
are short declarations of what differs: the start, the objective (labels or targets),
the direction (sign, L2-normalised, momentum) and the schedule (steps, step size).
With several restarts each example keeps the restart whose final point has the
highest objective.
"""

from __future__ import annotations

import abc
from typing import Any

import torch

from advframe.attack import Attack, Objective
from advframe.model import Model
from advframe.ops import generator, per_example, steepest
from advframe.threat import ThreatModel
from advframe_gradient.losses import check_loss, loss_objective


class IterativeAttack(Attack, abc.ABC):
    """Base class of the iterative gradient attacks: start, gradient, direction, step, project.

    A subclass declares:

    * :meth:`schedule` -> ``(step size, steps)`` for a threat model;
    * :meth:`start` (default: ``x`` clipped into the bounds);
    * :meth:`objective` (default: the loss its ``loss`` parameter names, ``"model"`` when it
      has none: the model's loss of ``y``, or minus the loss of the target when targeted);
    * :meth:`direction` with optional per-run state from :meth:`init_state` (default:
      the steepest-ascent direction of the threat's norm, ``sign(g)`` or ``g/||g||_2``);
    * ``restarts`` and ``seed`` parameters, when it has them.
    """

    #: parameter names of the step size and step count, for :meth:`probe_params`
    step_size_param: str = "step_size"

    @abc.abstractmethod
    def schedule(self, threat: ThreatModel) -> tuple[float, int]:
        """``(step size, steps)`` for ``threat``."""

    def start(self, x: torch.Tensor, threat: ThreatModel, gen: torch.Generator | None) -> torch.Tensor:
        """The first iterate (default: the clean input clipped into the bounds)."""
        return threat.clip_bounds(x)

    def validate(self) -> None:
        """Refuse a ``loss`` parameter outside :data:`~advframe_gradient.losses.LOSSES`."""
        if "loss" in self.defaults:
            check_loss(f"attack '{self.name}'", self.params["loss"])

    def objective(self, model: Model, y: torch.Tensor, target: torch.Tensor | None) -> Objective:
        """What the loop ascends: the ``loss`` parameter's loss of ``y`` (default: the model's
        own), or, targeted, its loss toward ``target`` (:func:`~advframe_gradient.losses.loss_objective`)."""
        return loss_objective(f"attack '{self.name}'", self.params.get("loss", "model"), model, y, target)

    def init_state(self, x: torch.Tensor) -> Any:
        """State carried across the steps of one run (default: none)."""
        return None

    def direction(self, g: torch.Tensor, state: Any, threat: ThreatModel) -> torch.Tensor:
        """The step direction from the gradient ``g`` (default: steepest ascent in the norm)."""
        return steepest(g, threat.norm)

    @classmethod
    def probe_params(cls, steps: int, step_size: float) -> dict[str, Any]:
        """Parameters that give this attack ``steps`` deterministic steps of ``step_size``.

        The checks use this to run a cheap or an unbounded version of the attack.
        """
        params: dict[str, Any] = {"steps": steps, cls.step_size_param: step_size}
        if "random_start" in cls.defaults:
            params["random_start"] = False
        if "restarts" in cls.defaults:
            params["restarts"] = 1
        return params

    def run(self, model: Model, x: torch.Tensor, threat: ThreatModel, objective: Objective, size: float,
            steps: int, gen: torch.Generator | None) -> torch.Tensor:
        """One run of the loop from :meth:`start`."""
        x_adv = self.start(x, threat, gen)
        state = self.init_state(x)
        for _ in range(steps):
            g, _ = self.gradient(model, x_adv, objective)
            x_adv = threat.project(x_adv + size * self.direction(g, state, threat), x)
        return x_adv

    def perturb(self, model: Model, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                target: torch.Tensor | None) -> torch.Tensor:
        if threat.eps == 0:
            return threat.clip_bounds(x)
        size, steps = self.schedule(threat)
        gen = generator(self.params.get("seed"))
        restarts = int(self.params.get("restarts", 1))
        objective = self.objective(model, y, target)
        best: torch.Tensor | None = None
        best_obj: torch.Tensor | None = None
        for _ in range(restarts):
            x_adv = self.run(model, x, threat, objective, size, steps, gen)
            if restarts == 1:
                return x_adv
            obj = objective(self.forward(model, x_adv))
            if best is None or best_obj is None:
                best, best_obj = x_adv, obj
            else:
                better = obj > best_obj
                best = torch.where(per_example(better, x_adv), x_adv, best)
                best_obj = torch.where(better, obj, best_obj)
        return best if best is not None else threat.clip_bounds(x)
