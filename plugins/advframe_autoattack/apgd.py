"""The Auto-PGD loop (Croce & Hein, ICML 2020, §3, Algorithm 1), shared by apgd_ce,
apgd_dlr and apgd_t.

One run ascends a per-example objective from a random start on the sphere of the
threat ball, with momentum and a step size that is halved at fixed checkpoints when
progress stalls. Examples leave the run as soon as they are fooled (their first fooling
iterate is kept); the others keep their highest-objective point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from advframe.model import Model
from advframe.ops import per_example, rand_like, randn_like, steepest
from advframe.threat import ThreatModel

#: Fraction of increasing steps below which the step size is halved (paper: rho = 0.75).
RHO = 0.75
#: Momentum weight alpha of the update (paper: 0.75; the first step uses none).
MOMENTUM = 0.75

#: ``(outputs, labels) -> per-example tensor`` for the examples still in the run.
LabelledFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def checkpoints(steps: int) -> list[int]:
    """Iteration counts ``w_j = ceil-free int(p_j · N)`` at which the step size is checked.

    The paper's ``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``,
    in the reference implementation's integer form: the first period is
    ``max(int(0.22 N), 1)`` iterations, each next one ``max(int(0.03 N), 1)`` shorter, but
    never below ``max(int(0.06 N), 1)``. For N = 100: 22, 41, 57, 70, 80, 87, 93, 99.
    """
    period = max(int(0.22 * steps), 1)
    shrink, shortest = max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    out, w = [], period
    while w <= steps:
        out.append(w)
        period = max(period - shrink, shortest)
        w += period
    return out


def sphere_start(x: torch.Tensor, threat: ThreatModel, gen: torch.Generator | None) -> torch.Tensor:
    """The reference's random start: a random point ON the ball's surface, clipped to bounds.

    linf: ``x + eps · t / ||t||_inf`` with ``t`` uniform in ``[-1, 1]^d``; l2:
    ``x + eps · t / ||t||_2`` with ``t`` standard normal.
    """
    t = rand_like(x, gen) * 2 - 1 if threat.norm == "linf" else randn_like(x, gen)
    flat = t.reshape(t.shape[0], -1)
    size = flat.abs().amax(dim=1) if threat.norm == "linf" else flat.norm(dim=1)
    return threat.project(x + threat.eps * t / per_example(size.clamp_min(1e-12), x), x)


@dataclass(frozen=True)
class Goal:
    """What a run ascends and when an example leaves it.

    Attributes:
        objective: ``(outputs, labels) -> values`` to ascend.
        fooled: ``(outputs, labels) -> bool`` mask of fooled examples.
    """

    objective: LabelledFn
    fooled: LabelledFn


@dataclass
class RunResult:
    """What one APGD run returns for each of its examples.

    Attributes:
        x_adv: the first fooling iterate, or else the highest-objective point.
        objective: the objective at ``x_adv`` (for fooled examples, at that iterate).
        fooled: whether the example was fooled.
    """

    x_adv: torch.Tensor
    objective: torch.Tensor
    fooled: torch.Tensor


class _State:
    """The per-example tensors of the examples still in a run, filtered together."""

    def __init__(self, **tensors: torch.Tensor) -> None:
        self.__dict__.update(tensors)

    def keep(self, mask: torch.Tensor) -> None:
        for key, value in list(self.__dict__.items()):
            self.__dict__[key] = value[mask]


def run_apgd(attack: Any, model: Model, x: torch.Tensor, labels: torch.Tensor, threat: ThreatModel, goal: Goal,
             steps: int, gen: torch.Generator | None) -> RunResult:
    """One APGD run on ``x`` (Algorithm 1 of the paper).

    Args:
        attack: the attack whose :meth:`~advframe.attack.Attack.gradient` counts the passes.
        model: the model.
        x: clean examples of the run.
        labels: per-example labels handed to ``goal.objective`` and ``goal.fooled`` (rows
            follow the examples still in the run).
        threat: the threat model (linf or l2).
        goal: the objective to ascend and the fooled test.
        steps: iterations ``N``; the run spends ``N + 1`` gradient evaluations (one at the
            start) unless every example is fooled earlier.
        gen: generator of the random start, or ``None`` for torch's global RNG.

    Step: ``z = P(x_k + eta · s(∇f(x_k)))`` with ``s = sign`` (linf) or ``g / ||g||_2`` (l2),
    ``x_{k+1} = P(x_k + alpha (z - x_k) + (1 - alpha)(x_k - x_{k-1}))``, ``alpha = 0.75``
    (1 for the first step), ``eta = 2 eps`` at the start. At each checkpoint ``w_j`` (see
    :func:`checkpoints`) ``eta`` is halved, and the iterate restarts from the best point,
    when fewer than ``rho = 0.75`` of the steps since ``w_{j-1}`` increased the
    objective (condition 1) or when neither eta nor the best objective changed since
    ``w_{j-1}`` (condition 2).
    """
    n = x.shape[0]
    result = RunResult(x.clone(), x.new_full((n,), float("-inf")), torch.zeros(n, dtype=torch.bool, device=x.device))
    checks = set(checkpoints(steps))
    s = _start(attack, model, x, labels, threat, goal, gen)
    last_check = 0
    for i in range(steps + 1):
        if i > 0:
            _track_best(s)
        _retire_fooled(s, goal.fooled(s.out, s.labels), result)
        if s.rows.numel() == 0 or i == steps:
            break
        if i in checks:
            _check_step_size(s, i - last_check)
            last_check = i
        _step(attack, model, s, threat, goal, 1.0 if i == 0 else MOMENTUM)
    left = s.rows
    result.x_adv[left] = s.best_x
    result.objective[left] = s.best
    return result


def _start(attack: Any, model: Model, x: torch.Tensor, labels: torch.Tensor, threat: ThreatModel, goal: Goal,
           gen: torch.Generator | None) -> _State:
    """The run's state at the random start on the sphere, after its first gradient evaluation."""
    n = x.shape[0]
    xa = sphere_start(x, threat, gen)
    grad, out = attack.gradient(model, xa, lambda o: goal.objective(o, labels))
    value = goal.objective(out, labels).detach()
    return _State(rows=torch.arange(n, device=x.device), x0=x, labels=labels, x=xa, x_prev=xa, grad=grad, out=out,
                  value=value, prev_value=value, step=x.new_full((n,), 2.0 * threat.eps), best_x=xa, best_grad=grad,
                  best=value, best_at_check=value, rises=torch.zeros(n, device=x.device),
                  reduced=torch.zeros(n, dtype=torch.bool, device=x.device))


def _track_best(s: _State) -> None:
    """Count the step if it increased the objective; keep the highest-objective point (in place)."""
    s.rises = s.rises + (s.value > s.prev_value).to(s.rises.dtype)
    better = s.value > s.best
    s.best_x = torch.where(per_example(better, s.x), s.x, s.best_x)
    s.best_grad = torch.where(per_example(better, s.x), s.grad, s.best_grad)
    s.best = torch.where(better, s.value, s.best)


def _retire_fooled(s: _State, hit: torch.Tensor, result: RunResult) -> None:
    """Write the examples fooled now (``hit``) into ``result`` and drop them from the run."""
    if bool(hit.any()):
        result.x_adv[s.rows[hit]] = s.x[hit]
        result.objective[s.rows[hit]] = s.value[hit]
        result.fooled[s.rows[hit]] = True
        s.keep(~hit)


def _step(attack: Any, model: Model, s: _State, threat: ThreatModel, goal: Goal, alpha: float) -> None:
    """One momentum step of size ``s.step`` along the steepest direction, then its gradient (in place)."""
    z = threat.project(s.x + per_example(s.step, s.x) * steepest(s.grad, threat.norm), s.x0)
    x_new = threat.project(s.x + alpha * (z - s.x) + (1 - alpha) * (s.x - s.x_prev), s.x0)
    s.x_prev, s.x, s.prev_value = s.x, x_new, s.value
    s.grad, s.out = attack.gradient(model, s.x, lambda o: goal.objective(o, s.labels))
    s.value = goal.objective(s.out, s.labels).detach()


def _check_step_size(s: _State, period: int) -> None:
    """Halve eta and restart from the best point where conditions 1 or 2 hold (in place)."""
    stalled = s.rises < RHO * period
    unchanged = ~s.reduced & (s.best <= s.best_at_check)
    halve = stalled | unchanged
    s.reduced = halve
    s.best_at_check = s.best
    s.rises = torch.zeros_like(s.rises)
    s.step = torch.where(halve, s.step / 2, s.step)
    wide = per_example(halve, s.x)
    s.x = torch.where(wide, s.best_x, s.x)
    s.x_prev = torch.where(wide, s.best_x, s.x_prev)
    s.grad = torch.where(wide, s.best_grad, s.grad)
    s.value = torch.where(halve, s.best, s.value)
