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
  its goal is met (by a small score margin, :data:`EXIT_MARGIN`), and the remaining steps run
  on the examples still standing. An attack that does not read the true label has a goal of
  its own (:meth:`IterativeAttack.own_target`: iter_ll's least-likely class), else leaving
  the clean prediction. Restarts run
  only on the examples no earlier restart broke (as AutoAttack does). The iterates of an
  example are those of the fixed-step run until its goal is met (up to the model's own
  batch-size numerics), so every accuracy the goal covers is at most the fixed-step one.
  The last iterate costs one forward query per example still standing.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
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
        if self.uses_true_label or target is not None:
            kept = _Kept(clean, model, y, target)
        else:  # label-free: the goal is read off the clean outputs (the first pass's, from the default start)
            kept = _Kept(clean, model, None, None, own_target=self.own_target)
            if type(self).start is not IterativeAttack.start:
                kept.set_reference(self.forward(model, clean))
        for _ in range(restarts):
            rows = (~kept.met).nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            self._run_early_exit(model, x, threat, objective, size, steps, gen, rows, kept)
        return kept.x

    def own_target(self, model: Model, clean_outputs: torch.Tensor) -> torch.Tensor | None:
        """The class an attack that does not read the true label steers each example toward,
        from the model's outputs at the clean inputs: its early-exit goal (default None: leave
        the clean prediction, DeepFool's rule)."""
        return None

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


#: The goal counts for early exit only when met by this margin of class scores, relative to
#: the largest score magnitude (at least 1), so that the batch-size numerics of the
#: evaluator's later whole-batch classification cannot undo it; the next step deepens it.
EXIT_MARGIN = 1e-4


class _Kept:
    """The best point of each example so far under early exit: first by the goal, then by the objective.

    Args:
        x: the clean batch, clipped into the bounds (the point kept until a better one is offered).
        model: the model whose decision rule (``model.predict``) and scores test the goal.
        y: the labels; the goal is ``predict != y`` untargeted.
        target: target classes; the goal is ``predict == target`` targeted.
        own_target: for an attack that reads neither (``y`` and ``target`` None): the classes
            it steers toward, from the clean outputs (:meth:`IterativeAttack.own_target`); the
            goal is reaching them, or leaving the clean prediction when it gives None. The
            clean outputs are the first ones offered, or those given to :meth:`set_reference`.
    """

    def __init__(self, x: torch.Tensor, model: Model, y: torch.Tensor | None, target: torch.Tensor | None,
                 own_target: Callable[[Model, torch.Tensor], torch.Tensor | None] | None = None) -> None:
        n = x.shape[0]
        self.x = x.clone()
        self.model, self.y, self.target, self.own_target = model, y, target, own_target
        self.met = torch.zeros(n, dtype=torch.bool, device=x.device)
        self.value = x.new_full((n,), float("-inf"), dtype=torch.float32)
        self.outputs: torch.Tensor | None = None  # the latest outputs of every example

    def set_reference(self, clean_outputs: torch.Tensor) -> None:
        """Read a label-free attack's goal off the model's outputs at the clean inputs."""
        with torch.no_grad():
            own = self.own_target(self.model, clean_outputs) if self.own_target is not None else None
            if own is not None:
                self.target = own.detach().clone()
            else:
                self.y = self.model.predict(clean_outputs.detach()).clone()

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

    def goal(self, rows: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Whether the outputs ``out`` of ``rows`` meet the goal, by :data:`EXIT_MARGIN` at least."""
        with torch.no_grad():
            pred = self.model.predict(out)
            scores = self.model.scores(out).float()
            tol = EXIT_MARGIN * scores.abs().amax(dim=1).clamp_min(1.0)
            cls = self.target[rows] if self.target is not None else self.y[rows]
            own = scores.gather(1, cls.view(-1, 1)).squeeze(1)
            others = scores.scatter(1, cls.view(-1, 1), float("-inf")).amax(dim=1)
            if self.target is not None:
                return (pred == cls) & (own - others > tol)
            return (pred != cls) & (others - own > tol)

    def offer(self, rows: torch.Tensor, x_adv: torch.Tensor, out: torch.Tensor, value: torch.Tensor) -> None:
        """Keep ``x_adv`` for the rows where it meets the goal or raises the objective."""
        out = out.detach()
        if self.outputs is None:
            self.outputs = out.clone()
        else:
            self.outputs = self.outputs.to(out.dtype)
            self.outputs[rows] = out
        if self.y is None and self.target is None:
            self.set_reference(out)  # the first offer: every example, at the clean inputs
        hit = self.goal(rows, out)
        value = value.to(self.value.dtype)
        take = hit | (value > self.value[rows])
        self.x[rows[take]] = x_adv[take].to(self.x.dtype)
        self.value[rows] = torch.where(take, value, self.value[rows])
        self.met[rows] = hit
