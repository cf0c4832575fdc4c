"""torch.distributed helpers: rank, world size, synchronisation and metric reduction.

Works unchanged without torch.distributed (one process): every helper is then the
identity. :func:`init_from_env` joins a group started by ``torchrun`` (gloo on the CPU,
nccl on CUDA); :func:`launch` starts N local processes with the same environment, which
is what ``advframe train|eval --devices N`` does.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from advframe.errors import DistributedError
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


# -- sharding of a global minibatch ------------------------------------------------

def shard_positions(n_local: int, rank: int, world: int) -> torch.Tensor:
    """Positions in the global minibatch of the ``n_local`` examples of ``rank``'s shard.

    The training loop gives rank ``r`` the strided shard ``r, r + world, r + 2·world, …``
    of every global minibatch (:func:`shard`); this is the inverse map.
    """
    return torch.arange(n_local) * world + rank


def shard(t: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """The strided shard ``t[rank::world]`` of a global minibatch."""
    return t[rank::world] if world > 1 else t


def global_count(n_local: int) -> int:
    """The sum of ``n_local`` over all processes (``n_local`` itself on one process)."""
    if not is_active():
        return int(n_local)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([int(n_local)], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return int(t.item())


def barrier() -> None:
    """Wait for every process (no-op on one process)."""
    if is_active():
        dist.barrier()


# -- process groups ----------------------------------------------------------------

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched_world() -> int:
    """``WORLD_SIZE`` set by torchrun or :func:`launch` (1 when not launched)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def init_from_env(device: str | torch.device = "cpu") -> torch.device:
    """Join the process group described by torchrun's environment variables.

    Does nothing on one process (no ``WORLD_SIZE`` > 1) or when a group already exists.
    The backend is ``nccl`` for CUDA devices and ``gloo`` for the CPU. On CUDA each
    process takes the GPU ``LOCAL_RANK``.

    Returns:
        The device this process should use.

    Raises:
        DistributedError: when the environment is incomplete or the group cannot form.
    """
    device = torch.device(device)
    if launched_world() <= 1 or is_active():
        return _local_device(device)
    missing = [k for k in ENV_KEYS if k not in os.environ]
    if missing:
        raise DistributedError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} not set: "
                               f"start with torchrun --nproc-per-node N or advframe --devices N")
    device = _local_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    except (RuntimeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DistributedError(f"cannot join the process group ({backend}): {first}") from None
    return device


def _local_device(device: torch.device) -> torch.device:
    if device.type == "cuda" and device.index is None and launched_world() > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def shutdown() -> None:
    """Leave the process group, if any, after a barrier so that every process leaves together.

    Without it a process that finishes first can tear its gloo connections down while a
    peer still uses them. One ``--devices 2`` training in 19 here ended with a C++ abort
    ("terminate called without an active exception") after the usual run time.
    """
    if is_active():
        try:
            dist.barrier()
        except RuntimeError:  # a peer that is already gone: leaving is all that is left to do
            pass
        dist.destroy_process_group()


def free_port() -> int:
    """A TCP port that is free on this machine now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(argv: list[str], nprocs: int, quiet_ranks: bool = True) -> int:
    """Run ``python -m advframe ARGV`` on ``nprocs`` local processes, torchrun-style.

    Each process gets ``RANK``/``LOCAL_RANK``/``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT``
    as torchrun would set them, so the command joins the group with
    :func:`init_from_env`. When one process fails the others are terminated.

    Args:
        argv: the CLI arguments (without any ``--devices`` option).
        nprocs: number of processes.
        quiet_ranks: send the standard output of ranks > 0 to ``/dev/null`` (their
            standard error is kept).

    Returns:
        0 when every process succeeded, else the first non-zero exit status.
    """
    if nprocs < 1:
        raise DistributedError(f"--devices {nprocs} is invalid: use a positive number of processes")
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    for rank in range(nprocs):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(nprocs),
                   LOCAL_WORLD_SIZE=str(nprocs), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        out = subprocess.DEVNULL if (quiet_ranks and rank > 0) else None
        procs.append(subprocess.Popen([sys.executable, "-m", "advframe", *argv], env=env, stdout=out))
    status = 0
    try:
        pending = list(procs)
        while pending:
            for p in list(pending):
                code = p.poll()
                if code is None:
                    continue
                pending.remove(p)
                if code != 0 and status == 0:
                    status = code
                    for other in pending:
                        other.terminate()
            time.sleep(0.05)
    except BaseException:
        for p in procs:
            if p.poll() is None:
                p.kill()
        raise
    return status


class DistributedModel:
    """A model behind ``DistributedDataParallel`` that keeps the Model protocol.

    ``model(x)`` runs the DDP forward (gradients are averaged over processes in
    backward); ``loss``, ``predict``, ``scores`` and every other attribute come from the
    bare module, which is also ``.module`` — defenses generate adversarial examples on
    ``.module`` so that the extra forward passes do not involve DDP.
    """

    def __init__(self, module: torch.nn.Module, device: torch.device | str = "cpu"):
        from torch.nn.parallel import DistributedDataParallel

        device = torch.device(device)
        self.module = module
        self.ddp = DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.ddp(x)

    def train(self, mode: bool = True) -> "DistributedModel":
        """Set train/eval mode of the wrapper and the module."""
        self.ddp.train(mode)
        return self

    def eval(self) -> "DistributedModel":
        """Eval mode."""
        return self.train(False)

    def __getattr__(self, name: str) -> Any:
        if name in ("module", "ddp"):
            raise AttributeError(name)
        return getattr(self.module, name)


def unwrap(model: Any) -> Any:
    """The bare model behind a :class:`DistributedModel`, ``DistributedDataParallel`` or
    ``DataParallel`` wrapper (the model itself otherwise).

    Defenses make their extra forward passes (adversarial examples, generator steps) on
    the bare model, so that they do not involve DDP's gradient synchronisation.
    """
    if isinstance(model, (DistributedModel, torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
        return model.module
    return model
