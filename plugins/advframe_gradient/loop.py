"""The one iterative loop of the gradient attacks (after foolbox 3's ``BaseGradientDescent.run``).

``x_0 = start(x)``; then ``steps`` times: ``g = ∇ objective(x_t)``, ``d = direction(g)``,
``x_{t+1} = Proj_{ball ∩ bounds}(x_t + size · d)``. pgd, iter_basic, iter_ll and mim
are short declarations of what differs: the start, the objective (labels or targets),
the direction (sign, L2-normalised, momentum) and the schedule (steps, step size).

Two ways to run it:

* **fixed steps** (``early_exit=False``, the papers' algorithm and what adversarial
  training uses): every example takes every step and the last iterate is returned. With
  several restarts each example keeps the restart whose final point has the highest
  objective (one forward query per restart).
* **early exit** (``early_exit=True``, the default when evaluating): each example keeps
  the best point seen so far, first by the attack's goal (misclassified, or classified as
  the target when targeted), then by its objective; it leaves the working batch as soon as
  its goal is met, and the remaining steps run on the examples still standing. An attack
  that does not read the true label (iter_ll) has the goal of leaving the clean prediction. Restarts run
  only on the examples no earlier restart broke (as AutoAttack does). The iterates of an
  example are those of the fixed-step run until its goal is met (up to the model's own
  batch-size numerics), so every accuracy the goal covers is at most the fixed-step one.
  The last iterate costs one forward query per example still standing.
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
        if self.params.get("early_exit", False):
            return self._perturb_early_exit(model, x, y, target, threat, objective, size, steps, restarts, gen)
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

    # -- early exit ---------------------------------------------------------------------
    def _perturb_early_exit(self, model: Model, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None,
                            threat: ThreatModel, objective: Objective, size: float, steps: int, restarts: int,
                            gen: torch.Generator | None) -> torch.Tensor:
        """Restarts on the examples not yet broken; each run drops an example once its goal is met."""
        clean = threat.clip_bounds(x)
        labels: torch.Tensor | None = y
        if not self.uses_true_label and target is None:  # label-free: leave the clean prediction
            labels = None if type(self).start is IterativeAttack.start else self._predict(model, clean)
        kept = _Kept(clean, model, labels, target)
        for _ in range(restarts):
            rows = (~kept.met).nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            self._run_early_exit(model, x, threat, objective, size, steps, gen, rows, kept)
        return kept.x

    def _predict(self, model: Model, x: torch.Tensor) -> torch.Tensor:
        """The model's prediction at ``x`` (one counted forward query)."""
        with torch.no_grad():
            return model.predict(self.forward(model, x))

    def _run_early_exit(self, model: Model, x: torch.Tensor, threat: ThreatModel, objective: Objective,
                        size: float, steps: int, gen: torch.Generator | None, rows: torch.Tensor,
                        kept: "_Kept") -> None:
        """One run from :meth:`start` on ``rows`` of ``x``, written into ``kept`` (in place).

        Every pass over the rows still standing gives their outputs at the current iterate,
        so the goal test costs nothing but the last iterate's forward query.
        """
        x0 = x[rows]
        x_adv = self.start(x0, threat, gen)
        state = self.init_state(x0)
        for t in range(steps + 1):
            on_rows = kept.on_rows(objective, rows)
            if t < steps:
                g, out = self.gradient(model, x_adv, on_rows)
            else:
                g, out = None, self.forward(model, x_adv)
            kept.offer(rows, x_adv, out, on_rows(out).detach())
            standing = ~kept.met[rows]
            if g is None or not bool(standing.any()):
                return
            if not bool(standing.all()):
                rows, x_adv, x0, g = rows[standing], x_adv[standing], x0[standing], g[standing]
                state = _rows_of(state, standing)
            x_adv = threat.project(x_adv + size * self.direction(g, state, threat), x0)


def _rows_of(state: Any, keep: torch.Tensor) -> Any:
    """The per-example state of the rows in ``keep`` (state is None or a tensor with one row per example)."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state[keep]
    raise TypeError(f"early exit needs init_state() to return None or a per-example tensor, not {type(state).__name__}")


class _Kept:
    """The best point of each example so far under early exit: first by the goal, then by the objective.

    Args:
        x: the clean batch, clipped into the bounds (the point kept until a better one is offered).
        model: the model whose decision rule (``model.predict``) tests the goal.
        y: the labels; the goal is ``predict != y`` untargeted. ``None`` for an attack that
            does not read the true label (iter_ll): the labels are then the predictions of
            the first points offered, which are the clean inputs, and the goal is to leave
            the clean prediction (DeepFool's rule).
        target: target classes; the goal is ``predict == target`` targeted.
    """

    def __init__(self, x: torch.Tensor, model: Model, y: torch.Tensor | None, target: torch.Tensor | None) -> None:
        n = x.shape[0]
        self.x = x.clone()
        self.model, self.y, self.target = model, y, target
        self.met = torch.zeros(n, dtype=torch.bool, device=x.device)
        self.value = x.new_full((n,), float("-inf"), dtype=torch.float32)
        self.outputs: torch.Tensor | None = None  # the latest outputs of every example

    def on_rows(self, objective: Objective, rows: torch.Tensor) -> Objective:
        """``objective`` for the outputs of ``rows`` alone.

        An attack's objective is built for the whole batch (its labels, targets or latched
        least-likely classes have one row per example): the outputs of ``rows`` are placed
        among the latest outputs of the others, and only their rows of the objective are kept.
        """
        if self.outputs is None or rows.numel() == self.x.shape[0]:
            return objective
        latest = self.outputs

        def restricted(out: torch.Tensor) -> torch.Tensor:
            return objective(latest.to(out.dtype).index_put((rows,), out))[rows]

        return restricted

    def offer(self, rows: torch.Tensor, x_adv: torch.Tensor, out: torch.Tensor, value: torch.Tensor) -> None:
        """Keep ``x_adv`` for the rows where it meets the goal or raises the objective."""
        out = out.detach()
        if self.outputs is None:
            self.outputs = out.clone()
        else:
            self.outputs = self.outputs.to(out.dtype)
            self.outputs[rows] = out
        with torch.no_grad():
            pred = self.model.predict(out)
        if self.y is None:
            self.y = pred.clone()  # the clean prediction (rows are every example on the first offer)
        hit = pred == self.target[rows] if self.target is not None else pred != self.y[rows]
        value = value.to(self.value.dtype)
        take = hit | (value > self.value[rows])
        self.x[rows[take]] = x_adv[take].to(self.x.dtype)
        self.value[rows] = torch.where(take, value, self.value[rows])
        self.met[rows] = hit
