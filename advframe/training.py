"""The training loop that defenses plug into, with exact resume from safetensors checkpoints.

One call, :func:`train`, runs ``epochs`` passes over the training data; each minibatch
goes through :func:`train_step` (the defense's loss, backward, optimiser step), so that a
distributed wrapper can reuse the step unchanged. Everything random is seeded by
``seed``: the initial weights (the global torch RNG, seeded before the model is built),
the order of every epoch (a ``torch.Generator`` seeded from ``(seed, epoch)``, see
:func:`epoch_order`) and the defense (the global torch RNG, saved in checkpoints).

On several processes (``torchrun`` or ``advframe train --devices N``, joined with
:func:`advframe.distributed.init_from_env`) the model is wrapped in
DistributedDataParallel and every GLOBAL minibatch of ``batch_size`` examples is split
across ranks: rank ``r`` takes the strided shard ``r, r + world, …``
(:func:`advframe.distributed.shard`) and makes its adversarial examples itself. Each
rank's loss is scaled by ``world · n_local / n_global`` before backward, so that DDP's
gradient averaging gives exactly the gradient of the global-minibatch mean: a
defense whose loss is a mean over its examples trains as on one process. Only rank 0
writes checkpoints and reports progress.

A checkpoint (``out``) is a safetensors file: model weights as ``model.<key>``,
optimiser tensors as ``optim.state.<param>.<key>``, defense tensors as
``defense.<key>``, the torch RNG state as ``rng.torch``; the rest (model name and
config, data set, defense, threat model, position, learning-rate schedule, history,
arguments) is JSON metadata. No pickle. With ``resume=True`` training continues from
``out`` and ends, on CPU, with exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advframe import distributed
from advframe.checkpoint import load_checkpoint, save_checkpoint
from advframe.dataset import LabeledData
from advframe.defense import Defense
from advframe.errors import CheckpointError, ParameterError
from advframe.model import Model, architecture_state, as_model, describe_model, model_config
from advframe.model_io import load_weights
from advframe.progress import ProgressCallback, emit
from advframe.threat import ThreatModel

OPTIMIZERS = ("sgd", "adam", "rmsprop")
SCHEDULES = ("none", "cosine", "step")
FORMAT = "advframe.train/1"


@dataclass
class TrainResult:
    """What :func:`train` did.

    Attributes:
        steps: optimiser steps taken in total (including those before a resume).
        epochs: completed epochs.
        final_loss: mean loss of the last (possibly partial) epoch.
        history: one dict per completed epoch: ``epoch``, ``steps``, ``loss``, and the
            means of the defense's statistics (``clean_acc``, ``adv_acc``, ...).
        path: the checkpoint written, or None.
        model: the trained model (in eval mode).
    """

    steps: int
    epochs: int
    final_loss: float
    history: list[dict[str, float]] = field(default_factory=list)
    path: str | None = None
    model: nn.Module | None = field(default=None, repr=False)


# ---------------------------------------------------------------- pieces


def lr_at(schedule: str, base_lr: float, step: int, total_steps: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based) of ``total_steps``.

    ``none``: constant; ``cosine``: ``base_lr * (1 + cos(pi * step / total)) / 2``;
    ``step``: ``base_lr`` times 0.1 from half-way and 0.01 from three quarters of the run.
    Computed from the step alone, so the schedule needs no state beyond the step.
    """
    if schedule == "none" or total_steps <= 0:
        return base_lr
    frac = min(step, total_steps) / total_steps
    if schedule == "cosine":
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * frac))
    if schedule == "step":
        return base_lr * (0.01 if frac >= 0.75 else 0.1 if frac >= 0.5 else 1.0)
    raise ParameterError(f"unknown schedule '{schedule}': use one of {', '.join(SCHEDULES)}")


def make_optimizer(name: str, params: Any, lr: float, momentum: float, weight_decay: float
                   ) -> torch.optim.Optimizer:
    """``sgd`` (with momentum), ``adam`` or ``rmsprop``."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ParameterError(f"unknown optimizer '{name}': use one of {', '.join(OPTIMIZERS)}")


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The example order of one epoch: a permutation fixed by ``(seed, epoch)``.

    A distributed loop takes every ``world_size``-th batch of this order on each rank.
    """
    g = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch)) % (2 ** 63))
    return torch.randperm(n, generator=g)


def add_to_epoch(sums: dict[str, float], count: int, values: dict[str, float]) -> None:
    """Add one minibatch of ``count`` examples to the running sums of an epoch (weighted by count)."""
    sums["examples"] = sums.get("examples", 0.0) + count
    for key, value in values.items():
        sums[key] = sums.get(key, 0.0) + value * count


def close_epoch(history: list[dict[str, float]], sums: dict[str, float], epoch: int, step: int) -> None:
    """Append epoch ``epoch`` (0-based) to ``history`` as the example-weighted means of ``sums``; clear ``sums``."""
    count = sums.pop("examples", 0.0) or 1.0
    history.append({"epoch": epoch + 1, "steps": step, **{k: v / count for k, v in sums.items()}})
    sums.clear()


def train_step(model: Model, defense: Defense, optimizer: torch.optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor, step: int, scale: float = 1.0, amp: bool = False) -> tuple[float, dict[str, float]]:
    """One minibatch: the defense's loss, backward, optimiser step.

    Args:
        model: the model, or a :class:`~advframe.distributed.DistributedModel`.
        defense: the defense whose ``training_loss`` is minimised.
        optimizer: the optimiser.
        x: this process's inputs (its shard of the global minibatch).
        y: their labels.
        step: the global step index (0-based).
        scale: factor applied to the loss before backward (``world · n_local / n_global``
            on several processes, 1 on one).
        amp: run the defense's forward passes under bf16 autocast (CUDA only).

    Returns:
        ``(loss, stats)`` as Python floats (the loss before ``scale``).
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    if x.shape[0] == 0:  # a rank without examples in a last, tiny minibatch still joins the all-reduce
        (model(x).sum() * 0.0).backward()
        optimizer.step()
        return 0.0, {}
    with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=amp):
        loss, stats = defense.training_loss(model, x, y, step)
    if not torch.isfinite(loss):
        raise ParameterError(f"training diverged at step {step} (loss {float(loss)}): lower --lr")
    (loss * scale if scale != 1.0 else loss).backward()
    optimizer.step()
    return float(loss.detach()), {k: float(v) for k, v in stats.items()}


def flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimiser ``state_dict`` into tensors (``optim.state.<p>.<key>``) and JSON."""
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for pid, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.state.{pid}.{key}"] = value
            else:
                plain.setdefault(str(pid), {})[key] = value
    return tensors, {"state": plain, "param_groups": state["param_groups"]}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer`."""
    state: dict[int, dict[str, Any]] = {}
    for pid, entries in (meta.get("state") or {}).items():
        state.setdefault(int(pid), {}).update(entries)
    for name, value in tensors.items():
        if not name.startswith("optim.state."):
            continue
        pid, key = name[len("optim.state."):].split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


# ---------------------------------------------------------------- resolution of arguments


def check_train_args(epochs: int, batch_size: int, optimizer: str, lr: float, schedule: str,
                     checkpoint_every: int | None, max_steps: int | None, momentum: float = 0.0,
                     weight_decay: float = 0.0) -> None:
    """Raise :class:`ParameterError` for a bad argument of a training loop."""
    if epochs < 1:
        raise ParameterError(f"epochs must be >= 1, got {epochs}")
    if batch_size < 1:
        raise ParameterError(f"batch size must be >= 1, got {batch_size}")
    if optimizer not in OPTIMIZERS:
        raise ParameterError(f"unknown optimizer '{optimizer}': use one of {', '.join(OPTIMIZERS)}")
    if schedule not in SCHEDULES:
        raise ParameterError(f"unknown schedule '{schedule}': use one of {', '.join(SCHEDULES)}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ParameterError(f"learning rate must be a positive number, got {lr}")
    if not (momentum >= 0 and math.isfinite(momentum)):  # NaN momentum used to be blamed on --lr
        raise ParameterError(f"momentum must be a finite number >= 0, got {momentum}")
    if not (weight_decay >= 0 and math.isfinite(weight_decay)):
        raise ParameterError(f"weight decay must be a finite number >= 0, got {weight_decay}")
    if checkpoint_every is not None and checkpoint_every < 1:
        raise ParameterError(f"checkpoint_every must be >= 1 step, got {checkpoint_every}")
    if max_steps is not None and max_steps < 0:
        raise ParameterError(f"max_steps must be >= 0, got {max_steps}")


def _resolve_data(data: LabeledData | str, data_dir: str | os.PathLike[str] | None) -> LabeledData:
    if isinstance(data, str):
        from advframe.api import load_dataset

        return load_dataset(data, split="train", data_dir=data_dir)
    if not isinstance(data, LabeledData):
        raise ParameterError(f"data must be a LabeledData or a data-set name, got {type(data).__name__}")
    return data


def _resolve_model(model: nn.Module | str, config: dict[str, Any] | None) -> tuple[nn.Module, str | None,
                                                                                  dict[str, Any]]:
    if isinstance(model, str):
        from advframe.api import build_model

        net = build_model(model, **(config or {}))
    elif isinstance(model, nn.Module):
        if config:
            raise ParameterError("model_config applies to a model name; the given nn.Module is already built")
        net = model
    else:
        raise ParameterError(f"model must be a registered name or an nn.Module, got {type(model).__name__}")
    name, cfg = model_config(net)
    wrapped = as_model(net)
    return wrapped, name, cfg


def _resolve_defense(defense: Defense | str, params: dict[str, Any] | None) -> Defense:
    if isinstance(defense, str):
        from advframe.api import get_defense

        return get_defense(defense, **(params or {}))
    if params:
        raise ParameterError("defense_params apply to a defense name; the given defense is already built")
    return defense


def _threat(threat: ThreatModel | dict[str, Any] | None, defense: Defense, data: Any) -> ThreatModel | None:
    """The threat model in force: the caller's, else the one the defense trains against."""
    if isinstance(threat, dict):
        return ThreatModel.from_dict(threat)
    if threat is not None:
        return threat
    lo, hi = getattr(data, "bounds", (0.0, 1.0))
    return defense.threat_model((float(lo), float(hi)))


# ---------------------------------------------------------------- checkpoints


def _save(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, defense: Defense,
          meta: dict[str, Any]) -> None:
    tensors = {f"model.{k}": v for k, v in architecture_state(model).items()}  # no wrapper prefixes
    opt_tensors, opt_meta = flatten_optimizer(optimizer.state_dict())
    tensors.update(opt_tensors)
    tensors.update({f"defense.{k}": v for k, v in defense.tensors().items()})
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    save_checkpoint(path, tensors, {**meta, "optimizer_state": opt_meta, "defense_state": defense.state_dict()})


def _restore(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, defense: Defense,
             expect: dict[str, Any]) -> dict[str, Any]:
    tensors, meta = load_checkpoint(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"cannot resume from '{path}': it holds no training state (written by "
                              f"something other than advframe.train); pass another --out or drop --resume")
    for key in ("model", "model_config", "defense", "defense_params", "seed", "batch_size", "examples",
                "optimizer", "lr", "momentum", "weight_decay", "schedule"):
        have = meta.get(key) if key in ("model", "model_config", "defense", "defense_params") \
            else (meta.get("train_args") or {}).get(key)
        if have != expect[key]:
            raise CheckpointError(f"cannot resume from '{path}': it was trained with {key}={have!r}, this run "
                                  f"asks for {expect[key]!r}; use the same settings or another --out")
    missing = [k for k in ("optimizer_state", "rng.torch") if k not in meta and k not in tensors]
    if missing:
        raise CheckpointError(f"cannot resume from '{path}': it lacks the {' and the '.join(missing)} a resume "
                              f"needs (a damaged or hand-made file); drop --resume or use another --out")
    load_weights(model, {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}, f"'{path}'")
    optimizer.load_state_dict(unflatten_optimizer(tensors, meta["optimizer_state"]))
    defense.load_state_dict(meta.get("defense_state") or {})
    defense.load_tensors({k[len("defense."):]: v for k, v in tensors.items() if k.startswith("defense.")})
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return meta


# ---------------------------------------------------------------- the loop


def train(model: nn.Module | str, data: LabeledData | str, *, model_config: dict[str, Any] | None = None,
          defense: Defense | str = "standard", defense_params: dict[str, Any] | None = None, epochs: int = 1,
          batch_size: int = 64, optimizer: str = "sgd", lr: float = 0.05, momentum: float = 0.9,
          weight_decay: float = 0.0, schedule: str = "none", seed: int = 0,
          out: str | os.PathLike[str] | None = None, checkpoint_every: int | None = None, resume: bool = False,
          device: str | torch.device = "cpu", progress: ProgressCallback = None, dataset_name: str | None = None,
          threat: Any = None, max_steps: int | None = None, data_dir: str | os.PathLike[str] | None = None,
          amp: bool = False) -> TrainResult:
    """Train ``model`` on ``data`` with a defense; optionally write a resumable checkpoint.

    Args:
        model: a registered model name (built with ``model_config``, after seeding) or an
            ``nn.Module`` (one built by :func:`advframe.build_model` remembers its name, so
            its checkpoint can be reloaded by :func:`advframe.load_model`).
        data: a :class:`LabeledData` or a data-set name (its ``train`` split is read,
            from ``data_dir`` where the data set needs one).
        model_config: constructor keywords of a named model.
        defense: a registered defense name (``standard``, ...) or a :class:`Defense`.
        defense_params: keyword hyper-parameters of a named defense.
        epochs: passes over the data.
        batch_size: minibatch size (the last batch of an epoch may be smaller).
        optimizer: ``sgd`` (with ``momentum``), ``adam`` or ``rmsprop``.
        lr: base learning rate.
        momentum: momentum of sgd and rmsprop.
        weight_decay: L2 weight decay.
        schedule: ``none``, ``cosine`` or ``step`` (see :func:`lr_at`).
        seed: fixes the initial weights, the order of every epoch and the defense's randomness.
        out: checkpoint path (``.safetensors``), written atomically at the end, every
            ``checkpoint_every`` steps, and when ``max_steps`` stops the run.
        checkpoint_every: steps between checkpoints.
        resume: continue from ``out`` when it exists.
        device: ``auto`` (cuda when available), ``cpu``, ``cuda``, ``cuda:1`` ...
        progress: callback receiving events ``"epoch k"`` (batches done of the epoch) with
            ``loss`` and the defense's statistics (``clean_acc``, ``adv_acc``...).
        dataset_name: data-set name stored in the checkpoint (default: ``data.name``).
        threat: the threat model (a :class:`~advframe.ThreatModel` or its dict) stored in
            the checkpoint and handed to the defense in its ``setup`` context.
        max_steps: stop after this many optimiser steps in total (a checkpoint is written),
            e.g. to split a long run into pieces that ``resume`` joins.
        data_dir: folder of a data set named by ``data``.
        amp: mixed precision, bf16 autocast of the forward passes (CUDA only).

    Inside a process group (see :mod:`advframe.distributed`) training is data-parallel:
    ``batch_size`` is the GLOBAL minibatch, split across ranks; the result equals the
    one-process run up to float rounding.

    Returns:
        A :class:`TrainResult`.

    Raises:
        ParameterError: for a bad argument.
        CheckpointError: for a checkpoint that cannot be resumed (other model, defense,
            seed, batch size or data).
    """
    check_train_args(epochs, batch_size, optimizer, lr, schedule, checkpoint_every, max_steps, momentum,
                     weight_decay)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ParameterError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if amp and dev.type != "cuda":
        raise ParameterError("amp (bf16 autocast) needs a CUDA device: drop --amp or use --device cuda")
    rank, world = distributed.rank_and_world()
    data = _resolve_data(data, data_dir)
    if len(data) == 0:
        raise ParameterError(f"data set '{data.name}' has no training examples")
    torch.manual_seed(seed)
    net, name, cfg = _resolve_model(model, model_config)
    net = net.to(dev)
    runner: Any = distributed.DistributedModel(net, dev) if world > 1 else net
    dfn = _resolve_defense(defense, defense_params)
    opt = make_optimizer(optimizer, net.parameters(), lr, momentum, weight_decay)

    n = len(data)
    per_epoch = math.ceil(n / batch_size)
    total = per_epoch * epochs
    threat_model = _threat(threat, dfn, data)
    threat_d = threat_model.to_dict() if threat_model is not None else None
    args = {"epochs": epochs, "batch_size": batch_size, "optimizer": optimizer, "lr": lr, "momentum": momentum,
            "weight_decay": weight_decay, "schedule": schedule, "seed": seed, "examples": n,
            "checkpoint_every": checkpoint_every, "world_size": world, "amp": amp}
    defense_name = dfn.name or type(dfn).__name__
    base_meta = {"format": FORMAT, **describe_model(net), "model": name, "model_config": cfg,
                 "dataset": dataset_name or data.name,
                 "defense": defense_name, "defense_params": dict(getattr(dfn, "params", {}) or {}),
                 "threat_model": threat_d, "train_args": args}
    path = Path(out) if out is not None else None

    step, epoch, batch = 0, 0, 0
    history: list[dict[str, float]] = []
    sums: dict[str, float] = {}
    dfn.setup(net, data, {"device": dev, "seed": seed, "epochs": epochs, "steps_per_epoch": per_epoch,
                          "total_steps": total, "threat": threat_model, "batch_size": batch_size, "rank": rank,
                          "world_size": world})
    if resume and path is not None and path.exists():
        expect = {"model": name, "model_config": cfg, "defense": defense_name,
                  "defense_params": base_meta["defense_params"], "seed": seed, "batch_size": batch_size,
                  "examples": n, "optimizer": optimizer, "lr": lr, "momentum": momentum,
                  "weight_decay": weight_decay, "schedule": schedule}
        meta = _restore(path, net, opt, dfn, expect)
        try:
            step, epoch, batch = int(meta["step"]), int(meta["epoch"]), int(meta["batch"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"cannot resume from '{path}': its training position (step, epoch, batch) "
                                  f"is missing or damaged; pass another --out or drop --resume") from None
        history = list(meta.get("history") or [])
        sums = dict(meta.get("epoch_sums") or {})

    def checkpoint() -> None:
        if path is not None and rank == 0:
            _save(path, net, opt, dfn, {**base_meta, "step": step, "epoch": epoch, "batch": batch,
                                        "steps_per_epoch": per_epoch, "history": history, "epoch_sums": sums,
                                        "scheduler": {"name": schedule, "base_lr": lr, "total_steps": total,
                                                      "last_lr": lr_at(schedule, lr, max(step - 1, 0), total)}})

    stopped = False
    while epoch < epochs and not stopped:
        order = epoch_order(n, seed, epoch)
        while batch < per_epoch:
            if max_steps is not None and step >= max_steps:
                stopped = True
                break
            idx = order[batch * batch_size:(batch + 1) * batch_size]
            mine = distributed.shard(idx, rank, world)
            x, y = data.x[mine].to(dev), data.y[mine].to(dev)
            for group in opt.param_groups:
                group["lr"] = lr_at(schedule, lr, step, total)
            loss, stats = train_step(runner, dfn, opt, x, y, step, scale=world * len(mine) / len(idx), amp=amp)
            step += 1
            batch += 1
            add_to_epoch(sums, len(idx), {"loss": loss, **stats})
            if rank == 0:
                emit(progress, f"epoch {epoch + 1}", batch, per_epoch, loss=loss, **stats)
            if checkpoint_every is not None and step % checkpoint_every == 0:
                checkpoint()
        if stopped:
            break
        close_epoch(history, sums, epoch, step)
        epoch += 1
        batch = 0
    checkpoint()
    distributed.barrier()  # the final checkpoint exists for every rank when train() returns
    if sums.get("examples"):
        final = sums["loss"] / sums["examples"]
    else:
        final = history[-1]["loss"] if history else float("nan")
    net.eval()
    return TrainResult(steps=step, epochs=epoch, final_loss=final, history=history,
                       path=str(path) if path is not None else None, model=net)

