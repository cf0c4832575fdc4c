"""``--batch-size auto``: the largest batch whose attack passes fit on the device.

An attack pass is a forward and a backward pass of the model's loss with respect to the
input, the unit every gradient attack repeats. On CUDA the batch is found by trial:
doubling until a pass runs out of memory, then bisection between the last size that fit
and the first that did not (out-of-memory errors are caught, the cache emptied). On the
CPU a trial that runs out of memory is killed by the operating system instead of raising,
so the size is computed: the activation bytes one example keeps for the backward pass
(measured with forward hooks on a batch of two) against half the memory available now.

When memory sets the limit, :data:`HEADROOM` of the largest size is used, leaving the
rest for the attacks' own tensors (the best point so far, momentum, restarts).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from advframe.errors import ParameterError
from advframe.model import Model, eval_mode

HEADROOM = 0.9
"""Share of the largest fitting batch that is used."""
CPU_CAP = 1024
"""Largest batch chosen on a CPU, where larger batches no longer run faster."""


@dataclass(frozen=True)
class BatchSizeFound:
    """What the search found.

    Attributes:
        batch_size: the batch size to use: ``HEADROOM`` of ``largest`` (at least 1), or all the
            examples when they fit.
        largest: the largest size that fit (CUDA, by trial) or was computed (CPU).
        method: ``"trial"`` or ``"estimate"``.
        trials: the sizes tried, in order, with whether each fit.
    """

    batch_size: int
    largest: int
    method: str
    trials: tuple[tuple[int, bool], ...] = ()


def largest_fitting(fits: Callable[[int], bool], cap: int) -> tuple[int, list[tuple[int, bool]]]:
    """The largest ``n <= cap`` with ``fits(n)``, assuming ``fits`` holds below some size and fails above.

    Doubles from 1 until a size fails (or ``cap``), then bisects.

    Returns:
        ``(n, trials)``; ``n`` is 0 when not even one example fits.
    """
    trials: list[tuple[int, bool]] = []

    def trial(n: int) -> bool:
        ok = fits(n)
        trials.append((n, ok))
        return ok

    good, n = 0, 1
    while n <= cap and trial(n):
        good, n = n, n * 2
    bad = min(n, cap + 1)
    if good == cap or good == 0:
        return good, trials
    while bad - good > 1:
        mid = (good + bad) // 2
        if trial(mid):
            good = mid
        else:
            bad = mid
    return good, trials


def attack_pass(model: Model, x: torch.Tensor, y: torch.Tensor) -> None:
    """One forward and backward pass of the model's loss with respect to ``x`` (what attacks repeat)."""
    x = x.detach().clone().requires_grad_(True)
    loss = model.loss(model(x), y).sum()
    (grad,) = torch.autograd.grad(loss, x)
    del grad


def cuda_fits(model: Model, x1: torch.Tensor, y1: torch.Tensor) -> Callable[[int], bool]:
    """``fits(n)``: whether an attack pass on ``n`` copies of the example runs without running out of memory."""

    def fits(n: int) -> bool:
        try:
            attack_pass(model, x1.expand(n, *x1.shape[1:]), y1.expand(n))
            return True
        except torch.cuda.OutOfMemoryError:  # torch.OutOfMemoryError from torch 2.5; this name since 1.13
            return False
        finally:
            torch.cuda.empty_cache()

    return fits


def activation_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the module outputs of one forward pass over ``x`` (what autograd keeps for backward)."""
    total = 0

    def hook(_module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal total
        for t in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total


def available_memory() -> int:
    """Bytes of memory available now (Linux ``MemAvailable``, else free physical pages)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def find_batch_size(model: Model, x: torch.Tensor, y: torch.Tensor, device: torch.device | str,
                    cap: int) -> BatchSizeFound:
    """The batch size for ``--batch-size auto`` (see the module docstring).

    Args:
        model: the Model, on ``device``, in eval mode during the search.
        x: at least two examples, on ``device``.
        y: their labels.
        device: where the run goes.
        cap: no larger than this (the number of examples to evaluate).

    Raises:
        ParameterError: when not even one example fits.
    """
    cap = max(1, int(cap))
    with eval_mode(model):
        if torch.device(device).type == "cuda":
            largest, trials = largest_fitting(cuda_fits(model, x[:1], y[:1]), cap)
            method = "trial"
        else:
            two = x[:2] if x.shape[0] >= 2 else x[:1].expand(2, *x.shape[1:])
            per_example = max(1, 2 * activation_bytes(model, two) // 2)  # outputs and their gradients
            largest = min(cap, CPU_CAP, max(1, available_memory() // 2 // per_example))
            trials, method = [], "estimate"
    if largest < 1:
        raise ParameterError(f"--batch-size auto: not even one example's attack pass fits on {device}: "
                             f"free the device, or pass --device cpu")
    use = largest if largest >= cap else max(1, int(largest * HEADROOM))  # the data, not memory, set the cap
    return BatchSizeFound(use, largest, method, tuple(trials))
