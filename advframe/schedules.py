"""Learning-rate schedules of the training loop, built on :mod:`torch.optim.lr_scheduler`.

The loop steps the scheduler once per optimiser step, so every schedule is defined over
the ``total`` optimiser steps of a run:

* ``none``: constant (:class:`~torch.optim.lr_scheduler.ConstantLR` with factor 1);
* ``step``: the base rate, times 0.1 from half-way and 0.01 from three quarters of the
  steps after the warm-up (:class:`~torch.optim.lr_scheduler.MultiStepLR`);
* ``cosine``: cosine annealing to 0 over the steps after the warm-up
  (:class:`~torch.optim.lr_scheduler.CosineAnnealingLR`; Loshchilov & Hutter, ICLR 2017);
* ``onecycle``: a linear rise to the base rate over the first half, then a linear fall
  to almost 0 (:class:`~torch.optim.lr_scheduler.OneCycleLR`, linear, momentum not
  cycled): the cyclic schedule of Fast-AT (Wong, Rice & Kolter, ICLR 2020, §5.1;
  Smith & Topin 2019).

A warm-up of ``warmup`` steps (``none``, ``step``, ``cosine``) rises linearly, step ``i``
at ``base · (i + 1) / warmup``, to the base rate (:class:`~torch.optim.lr_scheduler.LinearLR`, chained
with :class:`~torch.optim.lr_scheduler.SequentialLR`); ``onecycle`` has its own rise.
The scheduler's ``state_dict`` is plain JSON, stored in training checkpoints, so a
resumed run continues with exactly the rates of an uninterrupted one.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import torch
from torch.optim import lr_scheduler

from advframe.errors import ParameterError

SCHEDULES = ("none", "step", "cosine", "onecycle")


def check_schedule(schedule: str, warmup: int = 0) -> None:
    """Refuse an unknown schedule, or a warm-up with ``onecycle``.

    Raises:
        ParameterError: naming the schedule and the ones to use.
    """
    if schedule not in SCHEDULES:
        raise ParameterError(f"unknown schedule '{schedule}': use one of {', '.join(SCHEDULES)}")
    if schedule == "onecycle" and warmup > 0:
        raise ParameterError("schedule 'onecycle' rises from a low rate by itself: drop the warm-up "
                             "(warmup_epochs=0) or use another schedule")


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: str, total: int, warmup: int = 0
                   ) -> lr_scheduler.LRScheduler:
    """The scheduler of ``schedule`` over ``total`` optimiser steps with ``warmup`` warm-up steps.

    Args:
        optimizer: the optimiser whose rates it sets (its current ``lr`` is the base rate).
        schedule: one of :data:`SCHEDULES`.
        total: optimiser steps in the run.
        warmup: linear warm-up steps at the start (0: none; at most ``total``).

    Returns:
        A scheduler to ``step()`` after every optimiser step.
    """
    check_schedule(schedule, warmup)
    total = max(int(total), 1)
    warmup = min(max(int(warmup), 0), total)
    if schedule == "onecycle":
        base = optimizer.param_groups[0]["lr"]
        return lr_scheduler.OneCycleLR(optimizer, max_lr=base, total_steps=total, pct_start=0.5,
                                       anneal_strategy="linear", cycle_momentum=False)
    rest = max(total - warmup, 1)
    if schedule == "step":
        main: lr_scheduler.LRScheduler = lr_scheduler.MultiStepLR(
            optimizer, milestones=[math.ceil(rest / 2), math.ceil(3 * rest / 4)], gamma=0.1)
    elif schedule == "cosine":
        main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=rest)
    else:
        main = lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if warmup <= 1:
        return main
    # factor (i + 1) / warmup at warm-up step i: the base rate at the last warm-up step
    rise = lr_scheduler.LinearLR(optimizer, start_factor=1.0 / warmup, end_factor=1.0, total_iters=warmup - 1)
    return lr_scheduler.SequentialLR(optimizer, [rise, main], milestones=[warmup])


def load_state(scheduler: lr_scheduler.LRScheduler, state: dict[str, Any]) -> None:
    """Restore a scheduler from its ``state_dict`` after a JSON round trip.

    JSON turns the integer keys of :class:`~torch.optim.lr_scheduler.MultiStepLR`'s
    milestone counter into strings, which would never match a step again; they are
    turned back into integers (inside :class:`~torch.optim.lr_scheduler.SequentialLR`'s
    nested states too).
    """
    scheduler.load_state_dict(_integer_milestones(state))


def _integer_milestones(state: Any) -> Any:
    if isinstance(state, list):
        return [_integer_milestones(s) for s in state]
    if not isinstance(state, dict):
        return state
    out = {k: _integer_milestones(v) for k, v in state.items()}
    if isinstance(out.get("milestones"), dict):
        out["milestones"] = Counter({int(k): v for k, v in out["milestones"].items()})
    return out
