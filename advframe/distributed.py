"""torch.distributed helpers: rank, world size, synchronisation and metric reduction.

Works unchanged without torch.distributed (one process): every helper is then the
identity.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from advframe.metrics import MAX_FIELDS, RunTally


def is_active() -> bool:
    """True inside an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` without a process group."""
    if is_active():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def synchronize(device: torch.device | str) -> None:
    """Wait for queued CUDA work, so that wall-clock timings are honest."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _reduce_device(device: torch.device | str) -> torch.device:
    return torch.device(device) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_tally(tally: RunTally, device: torch.device | str = "cpu") -> RunTally:
    """Combine a tally over all processes (sums, and maxima for max fields)."""
    if not is_active():
        return tally
    from dataclasses import fields

    names = [f.name for f in fields(RunTally)]
    values = torch.tensor(tally.vector(), dtype=torch.float64, device=_reduce_device(device))
    is_max = torch.tensor([n in MAX_FIELDS for n in names], device=values.device)
    sums = torch.where(is_max, torch.zeros_like(values), values)
    maxs = torch.where(is_max, values, torch.full_like(values, -float("inf")))
    dist.all_reduce(sums, op=dist.ReduceOp.SUM)
    dist.all_reduce(maxs, op=dist.ReduceOp.MAX)
    return RunTally.from_vector(torch.where(is_max, maxs, sums).tolist())


def all_gather_objects(items: list[Any]) -> list[Any]:
    """Concatenate a list from every process (in rank order)."""
    if not is_active():
        return items
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, items)
    return [x for part in gathered for x in part]
