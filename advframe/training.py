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

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advframe import distributed
from advframe.augment import check_augment, offsets, shift
from advframe.checkpoint import load_checkpoint, save_checkpoint
from advframe.dataset import LabeledData, check_fits
from advframe.defense import Defense
from advframe.errors import CheckpointError, DataError, Hint, ParameterError
from advframe.holdout import Monitor, best_epoch, collapse, holdout_split, subset
from advframe.model import Model, architecture_state, as_model, describe_model, model_config
from advframe.model_io import load_weights
from advframe.options import Settings, resolve_device
from advframe.params import check_seed_value
from advframe.progress import ProgressCallback, emit
from advframe.schedules import check_schedule, load_state, make_scheduler
from advframe.ops import derive_seed
from advframe.threat import ThreatModel

OPTIMIZERS = ("sgd", "adam", "rmsprop")
KEEP = ("last", "best")
FORMAT = "advframe.train/1"
OTHER_OUT = (Hint("out"), Hint("resume", True))  # the fixes of a checkpoint a run cannot resume from

#: The training settings a defense may declare in its recipe (:attr:`Defense.recipe`).
RECIPE_KEYS = ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "schedule",
               "warmup_epochs", "augment", "holdout", "keep", "stop_on_collapse")

#: The value of each recipe setting that neither the caller nor the defense gives.
FALLBACK_RECIPE: dict[str, Any] = {"epochs": 5, "batch_size": 64, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
                                   "weight_decay": 0.0, "schedule": "none", "warmup_epochs": 0, "augment": "none",
                                   "holdout": 0, "keep": "last", "stop_on_collapse": False}


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
        model: the trained model (in eval mode): the kept epoch's weights.
        kept_epoch: the epoch whose weights were kept (``keep="best"`` or a collapse), or
            None for the weights at the end.
        stopped: why training stopped before its last epoch (a one-line description of
            catastrophic overfitting), or None.
        recipe: the training settings in force (the caller's, else the defense's recipe,
            else :data:`FALLBACK_RECIPE`).
    """

    steps: int
    epochs: int
    final_loss: float
    history: list[dict[str, float]] = field(default_factory=list)
    path: str | None = None
    model: nn.Module | None = field(default=None, repr=False)
    kept_epoch: int | None = None
    stopped: str | None = None
    recipe: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- pieces


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
    g = torch.Generator().manual_seed(derive_seed(seed, epoch))
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
        raise ParameterError(f"training diverged at step {step} (loss {float(loss)}): lower {{lr}}", hint=Hint("lr"))
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


@dataclass(frozen=True)
class TrainOptions(Settings):
    """Settings of :func:`train`.

    The recipe settings (:data:`RECIPE_KEYS`) default to None: a setting left out takes
    the value the defense declares in its recipe, else the one of
    :data:`FALLBACK_RECIPE` (:meth:`complete`).

    Attributes:
        model_config: constructor keywords of a named model.
        defense: a registered defense name (``standard``, ...) or a :class:`Defense`.
        defense_params: keyword hyper-parameters of a named defense.
        epochs: passes over the data.
        batch_size: minibatch size (the last batch of an epoch may be smaller).
        optimizer: ``sgd`` (with ``momentum``), ``adam`` or ``rmsprop``.
        lr: base learning rate.
        momentum: momentum of sgd and rmsprop.
        weight_decay: L2 weight decay.
        schedule: ``none``, ``step``, ``cosine`` or ``onecycle``
            (:mod:`advframe.schedules`), stepped once per optimiser step.
        warmup_epochs: epochs of linear learning-rate warm-up (may be fractional).
        augment: ``none`` or ``shift`` (random translations of up to 2 pixels,
            :mod:`advframe.augment`), applied to every training minibatch.
        holdout: examples of the training split set aside, class-balanced
            (:func:`advframe.holdout.holdout_split`), whose clean and robust accuracy is
            measured after every epoch and kept in the history.
        keep: ``last`` (the weights at the end) or ``best`` (the epoch of best held-out
            robust accuracy; needs a holdout).
        stop_on_collapse: stop, keeping the best epoch, when held-out robust accuracy
            collapses while clean accuracy rises (catastrophic overfitting; needs a holdout).
        seed: fixes the initial weights, the order of every epoch and the defense's randomness.
        out: checkpoint path (``.safetensors``), written atomically at the end, every
            ``checkpoint_every`` steps, and when ``max_steps`` stops the run.
        checkpoint_every: steps between checkpoints.
        resume: continue from ``out`` when it exists.
        device: ``auto`` (cuda when available), ``cpu``, ``cuda``, ``cuda:1`` ...
        progress: callback receiving events ``"epoch k"`` (batches done of the epoch) with
            the epoch's means so far of ``loss`` and of the defense's statistics
            (``clean_acc``, ``adv_acc``...), weighted by examples: the last event of an
            epoch carries the numbers of its ``history`` entry (and of ``final_loss``),
            held-out accuracies included.
        dataset_name: data-set name stored in the checkpoint (default: ``data.name``).
        threat: the threat model (a :class:`~advframe.ThreatModel` or its dict) handed to
            the defense in its ``setup`` context and stored in the checkpoint (default:
            the one the defense declares, :meth:`Defense.threat_model`).
        max_steps: stop after this many optimiser steps in total (a checkpoint is written),
            e.g. to split a long run into pieces that ``resume`` joins.
        data_dir: folder of a data set named by ``data``.
        amp: mixed precision, bf16 autocast of the forward passes (CUDA only).
    """

    model_config: dict[str, Any] | None = None
    defense: Defense | str = "standard"
    defense_params: dict[str, Any] | None = None
    epochs: int | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    warmup_epochs: float | None = None
    augment: str | None = None
    holdout: int | None = None
    keep: str | None = None
    stop_on_collapse: bool | None = None
    seed: int = 0
    out: str | os.PathLike[str] | None = None
    checkpoint_every: int | None = None
    resume: bool = False
    device: str | torch.device = "cpu"
    progress: ProgressCallback = None
    dataset_name: str | None = None
    threat: ThreatModel | dict[str, Any] | None = None
    max_steps: int | None = None
    data_dir: str | os.PathLike[str] | None = None
    amp: bool = False

    def complete(self, recipe: dict[str, Any]) -> "TrainOptions":
        """These settings with every recipe setting left out taken from ``recipe``, then the fallback.

        Raises:
            ParameterError: for a recipe key that is not a training setting, or a bad value.
        """
        unknown = sorted(set(recipe) - set(RECIPE_KEYS))
        if unknown:
            raise ParameterError(f"the defense's recipe names {', '.join(unknown)}, which are not training "
                                 f"settings: use {', '.join(RECIPE_KEYS)}")
        filled = {k: recipe.get(k, FALLBACK_RECIPE[k]) for k in RECIPE_KEYS if getattr(self, k) is None}
        done = dataclasses.replace(self, **filled)
        done.validate()
        return done

    def recipe(self) -> dict[str, Any]:
        """The recipe settings in force (after :meth:`complete`)."""
        return {k: getattr(self, k) for k in RECIPE_KEYS}

    def validate(self) -> None:
        """Raise :class:`ParameterError` for a bad setting of a training loop (None: from the recipe)."""
        for key in ("epochs", "batch_size", "checkpoint_every", "max_steps", "holdout"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ParameterError(f"{key.replace('_', ' ')} {value!r} is not an integer: pass a whole number")
        check_seed_value(self.seed)
        if self.out is not None and os.path.isdir(self.out):
            raise ParameterError(f"out '{self.out}' is a folder: pass a checkpoint file name inside it")
        if self.epochs is not None and self.epochs < 1:
            raise ParameterError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ParameterError(f"batch size must be >= 1, got {self.batch_size}")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise ParameterError(f"unknown optimizer '{self.optimizer}': use one of {', '.join(OPTIMIZERS)}")
        if self.schedule is not None:
            check_schedule(self.schedule, int(bool(self.warmup_epochs)))
        if self.augment is not None:
            check_augment(self.augment)
        if self.warmup_epochs is not None and not (0 <= self.warmup_epochs < math.inf):
            raise ParameterError(f"warmup epochs must be a number >= 0, got {self.warmup_epochs}")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise ParameterError(f"learning rate must be a positive number, got {self.lr}")
        if self.momentum is not None and not 0 <= self.momentum < 1:
            raise ParameterError(f"momentum must be a number in [0, 1), got {self.momentum}")
        if self.weight_decay is not None and not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ParameterError(f"weight decay must be a finite number >= 0, got {self.weight_decay}")
        if self.holdout is not None and self.holdout < 0:
            raise ParameterError(f"holdout must be >= 0 examples, got {self.holdout}")
        if self.keep is not None and self.keep not in KEEP:
            raise ParameterError(f"keep {self.keep!r} is not one of {', '.join(KEEP)}: pass last or best")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ParameterError(f"checkpoint_every must be >= 1 step, got {self.checkpoint_every}")
        if self.max_steps is not None and self.max_steps < 0:
            raise ParameterError(f"max_steps must be >= 0, got {self.max_steps}")

    def torch_device(self) -> torch.device:
        """The device to train on (:func:`~advframe.options.resolve_device`); amp needs CUDA."""
        dev = resolve_device(self.device)
        if self.amp and dev.type != "cuda":
            raise ParameterError("amp (bf16 autocast) needs a CUDA device: drop {amp} or use {device}",
                                 hint=(Hint("amp", True), Hint("device", "cuda")))
        return dev


def check_in_memory(name: str) -> None:
    """Refuse a data set whose reader streams it from disk (an image folder): training reads
    its data into memory.

    Raises:
        DataError: naming the data set and what to train on instead.
    """
    from advframe import plugins
    from advframe.arrays import is_array_file

    if not is_array_file(name) and getattr(plugins.registry().get("datasets", name).factory, "streamed", False):
        raise DataError(f"data set '{name}' is streamed from disk, batch by batch: training reads its data "
                        f"into memory; train on a data set such as cifar10 or an array file (.npz)")


def _resolve_data(data: LabeledData | str, data_dir: str | os.PathLike[str] | None) -> LabeledData:
    if isinstance(data, str):
        from advframe.api import load_dataset

        check_in_memory(data)
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


def _save(path: Path, run: "_Training", meta: dict[str, Any], final: bool = False) -> None:
    """Write the checkpoint of ``run``.

    ``model.*`` holds the weights a model loader reads: at the end with ``keep="best"``
    (or after a collapse) the kept epoch's, with the last weights as ``last.*`` for a
    resume; before the end the current weights, with the best epoch's so far as ``best.*``.
    """
    current = architecture_state(run.net)
    kept = run.best_state if final and run.keeps_best() and run.best_state is not None else current
    tensors = {f"model.{k}": v for k, v in kept.items()}  # no wrapper prefixes
    if kept is not current:  # a resume continues from the last weights
        tensors.update({f"last.{k}": v for k, v in current.items()})
    elif run.best_state is not None:
        tensors.update({f"best.{k}": v for k, v in run.best_state.items()})
    opt_tensors, opt_meta = flatten_optimizer(run.opt.state_dict())
    tensors.update(opt_tensors)
    tensors.update({f"defense.{k}": v for k, v in run.dfn.tensors().items()})
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    save_checkpoint(path, tensors, {**meta, "optimizer_state": opt_meta, "defense_state": run.dfn.state_dict(),
                                    "scheduler_state": run.sched.state_dict()})


def _restore(path: Path, run: "_Training", expect: dict[str, Any]) -> dict[str, Any]:
    tensors, meta = load_checkpoint(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"cannot resume from '{path}': it holds no training state (written by "
                              f"something other than advframe.train); pass another {{out}} or drop {{resume}}",
                              hint=OTHER_OUT)
    for key, want in expect.items():
        have = meta.get(key) if key in ("model", "model_config", "defense", "defense_params") \
            else (meta.get("train_args") or {}).get(key)
        if have != want:
            raise CheckpointError(f"cannot resume from '{path}': it was trained with {key}={have!r}, this run "
                                  f"asks for {want!r}; use the same settings or another {{out}}", hint=Hint("out"))
    missing = [k for k in ("optimizer_state", "scheduler_state", "rng.torch") if k not in meta and k not in tensors]
    if missing:
        raise CheckpointError(f"cannot resume from '{path}': it lacks the {' and the '.join(missing)} a resume "
                              f"needs (a damaged or hand-made file); drop {{resume}} or use another {{out}}",
                              hint=OTHER_OUT)
    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    model, last, best = part("model."), part("last."), part("best.")
    load_weights(run.net, last or model, f"'{path}'")
    run.best_state = (model if last else best) or None
    run.opt.load_state_dict(unflatten_optimizer(tensors, meta["optimizer_state"]))
    load_state(run.sched, meta["scheduler_state"])
    run.dfn.load_state_dict(meta.get("defense_state") or {})
    run.dfn.load_tensors({k[len("defense."):]: v for k, v in tensors.items() if k.startswith("defense.")})
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return meta


def _refuse_watching_nothing(keep: str, stop_on_collapse: bool | None) -> None:
    """Refuse ``keep=best`` or an explicit ``stop_on_collapse`` when no holdout is watched."""
    for asked, fix in ((keep == "best" and Hint("keep", "best"), Hint("keep", "last")),
                       (stop_on_collapse and Hint("stop_on_collapse", True), Hint("stop_on_collapse", False))):
        if asked:
            raise ParameterError(f"{{{asked.option}}} watches a held-out slice of the training data, and the holdout "
                                 f"is 0: give a holdout (e.g. {{holdout}}) or ask for {{{fix.option}}}",
                                 hint=(asked, Hint("holdout", 200), fix))


# ---------------------------------------------------------------- the loop


class _Training:
    """The state of one training run: model, optimiser, schedule, defense, holdout, position, history."""

    def __init__(self, model: nn.Module | str, data: LabeledData | str, opts: TrainOptions):
        self.dfn = _resolve_defense(opts.defense, opts.defense_params)
        self.opts = o = opts.complete(self.dfn.training_recipe())
        self.dev = o.torch_device()
        self.rank, self.world = distributed.rank_and_world()
        full = _resolve_data(data, o.data_dir)
        if len(full) == 0:
            raise ParameterError(f"data set '{full.name}' has no training examples")
        train_idx, held_idx = holdout_split(full, int(o.holdout))
        if not len(held_idx):  # a recipe's stop_on_collapse without a holdout has nothing to watch: inert
            _refuse_watching_nothing(o.keep, opts.stop_on_collapse)
        self.data = subset(full, train_idx, full.split) if len(held_idx) else full
        torch.manual_seed(o.seed)
        net, self.name, self.cfg = _resolve_model(model, o.model_config)
        self.net = net.to(self.dev)
        check_fits(self.net, self.data, self.dev, self.name)  # shapes and labels, before any step
        self.runner: Any = distributed.DistributedModel(self.net, self.dev) if self.world > 1 else self.net
        self.opt = make_optimizer(o.optimizer, self.net.parameters(), o.lr, o.momentum, o.weight_decay)
        self.n = len(self.data)
        self.per_epoch = math.ceil(self.n / o.batch_size)
        self.total = self.per_epoch * o.epochs
        self.sched = make_scheduler(self.opt, o.schedule, self.total, round(o.warmup_epochs * self.per_epoch))
        threat = _threat(o.threat, self.dfn, self.data)
        self.monitor = Monitor.build(subset(full, held_idx, "holdout"), self.dfn.monitor(), threat) \
            if len(held_idx) else None
        args = {**o.recipe(), "seed": o.seed, "examples": self.n, "checkpoint_every": o.checkpoint_every,
                "world_size": self.world, "amp": o.amp}
        self.meta = {"format": FORMAT, **describe_model(self.net), "model": self.name, "model_config": self.cfg,
                     "dataset": o.dataset_name or self.data.name, "defense": self.dfn.name or type(self.dfn).__name__,
                     "defense_params": dict(self.dfn.params or {}),
                     "threat_model": threat.to_dict() if threat is not None else None, "train_args": args,
                     "monitor": None if self.monitor is None or self.monitor.spec is None
                     else {"attack": self.monitor.spec.name, "params": dict(self.monitor.spec.attack.params)}}
        self.path = Path(o.out) if o.out is not None else None
        self.step = self.epoch = self.batch = 0
        self.history: list[dict[str, float]] = []
        self.sums: dict[str, float] = {}
        self.best_state: dict[str, torch.Tensor] | None = None
        self.stopped: str | None = None
        self.dfn.setup(self.net, self.data, {
            "device": self.dev, "seed": o.seed, "epochs": o.epochs, "steps_per_epoch": self.per_epoch,
            "total_steps": self.total, "threat": threat, "batch_size": o.batch_size, "rank": self.rank,
            "world_size": self.world})

    def keeps_best(self) -> bool:
        """Whether the final checkpoint holds the best epoch rather than the last."""
        return self.opts.keep == "best" or self.stopped is not None

    def restore(self) -> None:
        """Continue from ``out`` when asked to and it exists (same settings, else refused)."""
        o = self.opts
        if not (o.resume and self.path is not None and self.path.exists()):
            return
        expect = {"model": self.name, "model_config": self.cfg, "defense": self.meta["defense"],
                  "defense_params": self.meta["defense_params"], "seed": o.seed, "examples": self.n,
                  **{k: getattr(o, k) for k in RECIPE_KEYS if k not in ("epochs", "keep", "stop_on_collapse")}}
        meta = _restore(self.path, self, expect)
        try:
            self.step, self.epoch, self.batch = int(meta["step"]), int(meta["epoch"]), int(meta["batch"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"cannot resume from '{self.path}': its training position (step, epoch, batch) "
                                  f"is missing or damaged; pass another {{out}} or drop {{resume}}",
                                  hint=OTHER_OUT) from None
        self.history = list(meta.get("history") or [])
        self.sums = dict(meta.get("epoch_sums") or {})
        self.stopped = meta.get("stopped")

    def checkpoint(self, final: bool = False) -> None:
        """Write the resumable checkpoint (rank 0 only); ``final`` applies ``keep``."""
        if self.path is None or self.rank != 0:
            return
        _save(self.path, self, {
            **self.meta, "step": self.step, "epoch": self.epoch, "batch": self.batch,
            "steps_per_epoch": self.per_epoch, "history": self.history, "epoch_sums": self.sums,
            "recipe": self.opts.recipe(), "kept_epoch": self.kept_epoch() if final else None,
            "stopped": self.stopped,
            "scheduler": {"name": self.opts.schedule, "base_lr": self.opts.lr, "total_steps": self.total,
                          "last_lr": self.sched.get_last_lr()[0]}}, final=final)

    def kept_epoch(self) -> int | None:
        """The epoch whose weights the final checkpoint holds when it is not the last one."""
        return best_epoch(self.history) if self.keeps_best() else None

    def watch(self) -> None:
        """After an epoch: measure the holdout, remember the best weights, look for a collapse."""
        if self.monitor is None:
            return
        self.history[-1].update(self.monitor.measure(self.net, self.dev))
        if best_epoch(self.history) == self.history[-1]["epoch"]:
            self.best_state = {k: v.detach().clone() for k, v in architecture_state(self.net).items()}
        if self.opts.stop_on_collapse:
            self.stopped = collapse(self.history)

    def run_epoch(self) -> bool:
        """Train the rest of the current epoch; False when ``max_steps`` or a collapse stopped it."""
        o = self.opts
        order = epoch_order(self.n, o.seed, self.epoch)
        while self.batch < self.per_epoch:
            if o.max_steps is not None and self.step >= o.max_steps:
                return False
            idx = order[self.batch * o.batch_size:(self.batch + 1) * o.batch_size]
            mine = distributed.shard(idx, self.rank, self.world)
            x, y = self.data.x[mine].to(self.dev), self.data.y[mine].to(self.dev)
            if o.augment == "shift":  # offsets drawn for the global minibatch, this rank's shard kept
                where = distributed.shard(offsets(len(idx), o.seed, self.step), self.rank, self.world)
                x = shift(x, where, float(self.data.bounds[0]))
            loss, stats = train_step(self.runner, self.dfn, self.opt, x, y, self.step,
                                     scale=self.world * len(mine) / len(idx), amp=o.amp)
            self.sched.step()
            self.step += 1
            self.batch += 1
            add_to_epoch(self.sums, len(idx), {"loss": loss, **stats})
            if self.rank == 0 and self.batch < self.per_epoch:  # the epoch's means so far
                seen = self.sums["examples"]
                emit(o.progress, f"epoch {self.epoch + 1}", self.batch, self.per_epoch,
                     **{k: v / seen for k, v in self.sums.items() if k != "examples"})
            if o.checkpoint_every is not None and self.step % o.checkpoint_every == 0:
                self.checkpoint()
        close_epoch(self.history, self.sums, self.epoch, self.step)
        self.watch()
        if self.rank == 0:  # the epoch's last event carries its history entry
            emit(o.progress, f"epoch {self.epoch + 1}", self.per_epoch, self.per_epoch,
                 **{k: v for k, v in self.history[-1].items() if k not in ("epoch", "steps")})
        self.epoch += 1
        self.batch = 0
        return self.stopped is None

    def result(self) -> TrainResult:
        """The :class:`TrainResult` (after the final checkpoint)."""
        if self.sums.get("examples"):
            final = self.sums["loss"] / self.sums["examples"]
        else:
            final = self.history[-1]["loss"] if self.history else float("nan")
        kept = self.kept_epoch()
        if self.keeps_best() and self.best_state is not None:
            load_weights(self.net, self.best_state, "the best epoch's weights")
        self.net.eval()
        return TrainResult(steps=self.step, epochs=self.epoch, final_loss=final, history=self.history,
                           path=str(self.path) if self.path is not None else None, model=self.net,
                           kept_epoch=kept, stopped=self.stopped, recipe=self.opts.recipe())


def train(model: nn.Module | str, data: LabeledData | str, **options: Any) -> TrainResult:
    """Train ``model`` on ``data`` with a defense; optionally write a resumable checkpoint.

    Args:
        model: a registered model name (built with ``model_config``, after seeding) or an
            ``nn.Module`` (one built by :func:`advframe.build_model` remembers its name, so
            its checkpoint can be reloaded by :func:`advframe.load_model`).
        data: a :class:`LabeledData` or a data-set name (its ``train`` split is read,
            from ``data_dir`` where the data set needs one).
        **options: the settings of :class:`TrainOptions` (``defense``, ``epochs``,
            ``batch_size``, ``optimizer``, ``lr``, ``schedule``, ``holdout``, ``keep``,
            ``seed``, ``out``, ``resume``, ...); an unknown one is an error. Recipe
            settings left out come from the defense's recipe (:attr:`Defense.recipe`).

    Inside a process group (see :mod:`advframe.distributed`) training is data-parallel:
    ``batch_size`` is the GLOBAL minibatch, split across ranks; the result equals the
    one-process run up to float rounding.

    Returns:
        A :class:`TrainResult`; ``stopped`` says when a collapse ended the run early.

    Raises:
        ParameterError: for a bad argument.
        CheckpointError: for a checkpoint that cannot be resumed (other model, defense,
            seed, batch size, optimiser settings or data).
    """
    run = _Training(model, data, TrainOptions.of(options))
    run.restore()
    while run.epoch < run.opts.epochs and run.stopped is None and run.run_epoch():
        pass
    finished = run.epoch >= run.opts.epochs or run.stopped is not None
    run.checkpoint(final=finished)
    distributed.barrier()  # the final checkpoint exists for every rank when train() returns
    return run.result()
