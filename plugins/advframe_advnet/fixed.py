"""Training a generator against a FIXED classifier (adversarial networks §4.5, Table 5).

The generator G maximises the classifier's loss on ``clip(x + ε·G(x))``; the classifier
does not move. The adversarial-networks paper runs SGD (step 0.01, momentum 0.9) for 200k iterations and
reports the classifier's test accuracy under the trained G (its Table 5): the wide
encoder–decoder G1 comes close to PGD against an undefended model.

Checkpoints (format ``advframe.generator/1``) hold the generator (``generator.*``), the
optimiser (``optim.state.*``) and the position, written atomically; ``resume`` continues
an interrupted run and ends with the weights of an uninterrupted one.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from advframe.checkpoint import load_checkpoint, save_checkpoint
from advframe.dataset import LabeledData
from advframe.errors import CheckpointError, ParameterError
from advframe.model import as_model
from advframe.progress import ProgressCallback, emit
from advframe.ops import derive_seed
from advframe.training import (TrainOptions, add_to_epoch, close_epoch, epoch_order, flatten_optimizer,
                               make_optimizer, unflatten_optimizer)
from advframe_advnet.attack import GENERATOR_FORMAT
from advframe_advnet.generators import Generator, generator_for


@dataclass
class GeneratorTrainResult:
    """What :func:`train_generator` did.

    Attributes:
        steps: optimiser steps in total (including those before a resume).
        epochs: completed epochs.
        history: per completed epoch: ``epoch``, ``steps``, ``loss`` (the classifier's mean
            loss on the generated examples, which G maximises) and ``adv_acc``.
        path: the checkpoint written, or None.
        generator: the trained generator (eval mode).
    """

    steps: int
    epochs: int
    history: list[dict[str, float]] = field(default_factory=list)
    path: str | None = None
    generator: Generator | None = field(default=None, repr=False)


@dataclass(frozen=True)
class GeneratorTrainConfig:
    """The hyper-parameters of :func:`train_generator` (adversarial networks paper, §4.5).

    Attributes:
        generator: ``g1``, ``g2`` or ``g3``.
        width: k (paper: 8 "narrow" and 64 "wide").
        eps: ε of the perturbations.
        norm: ``linf`` or ``l2``.
        epochs: passes over the data.
        batch_size: minibatch size.
        optimizer: ``sgd`` (default, with ``momentum``), ``adam`` or ``rmsprop``.
        lr: learning rate (paper: 0.01).
        momentum: momentum (paper: 0.9).
        seed: fixes G's initial weights, the order of every epoch and G2's z.
        checkpoint_every: steps between checkpoints.
        max_steps: stop after this many steps in total (a checkpoint is written).
    """

    generator: str = "g1"
    width: int = 64
    eps: float = 0.3
    norm: str = "linf"
    epochs: int = 1
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    seed: int = 0
    checkpoint_every: int | None = None
    max_steps: int | None = None

    def validate(self) -> None:
        """Check the settings (the training loop's checks, and ``eps``).

        Raises:
            ParameterError: for a bad setting.
        """
        TrainOptions(epochs=self.epochs, batch_size=self.batch_size, optimizer=self.optimizer, lr=self.lr,
                     momentum=self.momentum, seed=self.seed,
                     checkpoint_every=self.checkpoint_every, max_steps=self.max_steps).validate()
        if not (self.eps >= 0 and math.isfinite(self.eps)):
            raise ParameterError(f"eps must be a finite number >= 0, got {self.eps}")

    def train_args(self, examples: int) -> dict[str, Any]:
        """The settings a checkpoint records (a resumed run must match them)."""
        return {"epochs": self.epochs, "batch_size": self.batch_size, "optimizer": self.optimizer, "lr": self.lr,
                "momentum": self.momentum, "seed": self.seed, "examples": examples, "eps": self.eps}


def _with_options(config: GeneratorTrainConfig | None, options: dict[str, Any]) -> GeneratorTrainConfig:
    """``config`` (default: the defaults) with the keyword ``options`` replacing its fields."""
    known = {f.name for f in fields(GeneratorTrainConfig)}
    for key in options:
        if key not in known:
            raise TypeError(f"train_generator() got an unexpected keyword argument '{key}'")
    return replace(config or GeneratorTrainConfig(), **options)


class _GeneratorRun:
    """One training run of a generator against a fixed model: its networks, position and checkpoints."""

    def __init__(self, model: Any, gen: Generator, data: LabeledData, config: GeneratorTrainConfig,
                 device: torch.device, path: Path | None, classifier_name: str | None) -> None:
        self.model, self.gen, self.data, self.config = model, gen, data, config
        self.device, self.path = device, path
        self.params = [p for p in gen.parameters() if p.requires_grad]
        self.opt = make_optimizer(config.optimizer, self.params, config.lr, config.momentum, 0.0)
        self.bounds = (float(data.bounds[0]), float(data.bounds[1]))
        self.per_epoch = math.ceil(len(data) / config.batch_size)
        self.base = {"format": GENERATOR_FORMAT, "generator_config": gen.config(), "eps": config.eps,
                     "norm": config.norm, "classifier": classifier_name, "dataset": data.name,
                     "train_args": config.train_args(len(data))}
        self.step, self.epoch, self.batch = 0, 0, 0
        self.history: list[dict[str, float]] = []
        self.sums: dict[str, float] = {}

    def resume(self) -> None:
        """Continue from the checkpoint at ``path``, which must come from the same settings.

        Raises:
            CheckpointError: for a checkpoint that is not a generator's or was trained otherwise.
        """
        path, base = self.path, self.base
        tensors, meta = load_checkpoint(path)
        if meta.get("format") != GENERATOR_FORMAT:
            raise CheckpointError(f"cannot resume from '{path}': it is not a generator checkpoint; pass another --out")
        for key in ("generator_config", "classifier", "train_args"):
            if meta.get(key) != base[key]:
                raise CheckpointError(f"cannot resume from '{path}': it was trained with {key}={meta.get(key)!r}, "
                                      f"this run asks for {base[key]!r}; use the same settings or another --out")
        self.gen.load_state_dict({k[len("generator."):]: v for k, v in tensors.items() if k.startswith("generator.")})
        self.opt.load_state_dict(unflatten_optimizer(tensors, meta["optimizer_state"]))
        self.step, self.epoch, self.batch = int(meta["step"]), int(meta["epoch"]), int(meta["batch"])
        self.history, self.sums = list(meta.get("history") or []), dict(meta.get("epoch_sums") or {})

    def checkpoint(self) -> None:
        """Write the generator, the optimiser and the position to ``path`` (atomically), if any."""
        if self.path is None:
            return
        opt_tensors, opt_meta = flatten_optimizer(self.opt.state_dict())
        tensors = {f"generator.{k}": v for k, v in self.gen.state_dict().items()}
        tensors.update(opt_tensors)
        save_checkpoint(self.path, tensors, {**self.base, "optimizer_state": opt_meta, "step": self.step,
                                             "epoch": self.epoch, "batch": self.batch, "history": self.history,
                                             "epoch_sums": self.sums})

    def train_epoch(self, progress: ProgressCallback) -> bool:
        """The rest of the current epoch; False when ``max_steps`` stopped it (the epoch stays open)."""
        cfg = self.config
        order = epoch_order(len(self.data), cfg.seed, self.epoch)
        while self.batch < self.per_epoch:
            if cfg.max_steps is not None and self.step >= cfg.max_steps:
                return False
            self.train_step(order[self.batch * cfg.batch_size:(self.batch + 1) * cfg.batch_size], progress)
        close_epoch(self.history, self.sums, self.epoch, self.step)
        self.epoch += 1
        self.batch = 0
        return True

    def train_step(self, idx: torch.Tensor, progress: ProgressCallback) -> None:
        """One ascent step of G on the classifier's loss over the examples ``idx``."""
        cfg, model, dev = self.config, self.model, self.device
        x, y = self.data.x[idx].to(dev), self.data.y[idx].to(dev)
        noise = torch.Generator().manual_seed(derive_seed(cfg.seed, self.step))
        with torch.enable_grad():
            outputs = model(self.gen.perturb(x, y, cfg.eps, self.bounds, noise))
            loss = model.loss(outputs, y).mean()
            grads = torch.autograd.grad(loss, self.params)  # the classifier's parameters get no .grad
        for p, g in zip(self.params, grads):
            p.grad = -g  # gradient ascent on the classifier's loss
        self.opt.step()
        with torch.no_grad():
            adv_acc = float((model.predict(outputs) == y).float().mean())
        loss_value = float(loss.detach())
        self.step += 1
        self.batch += 1
        add_to_epoch(self.sums, len(idx), {"loss": loss_value, "adv_acc": adv_acc})
        emit(progress, f"epoch {self.epoch + 1}", self.batch, self.per_epoch, loss=loss_value, adv_acc=adv_acc)
        if cfg.checkpoint_every is not None and self.step % cfg.checkpoint_every == 0:
            self.checkpoint()


def train_generator(classifier: Any, data: LabeledData, config: GeneratorTrainConfig | None = None, *,
                    out: str | os.PathLike[str] | None = None, resume: bool = False,
                    device: str | torch.device = "cpu", progress: ProgressCallback = None,
                    classifier_name: str | None = None, **options: Any) -> GeneratorTrainResult:
    """Train a generator to raise ``classifier``'s loss; the classifier stays fixed.

    Args:
        classifier: the fixed model (eval mode; its own ``loss`` is maximised).
        data: training examples (images, square).
        config: the hyper-parameters (default: :class:`GeneratorTrainConfig`'s defaults).
        out: checkpoint path, written atomically at the end and every ``checkpoint_every`` steps.
        resume: continue from ``out`` when it exists.
        device: ``cpu``, ``cuda``...
        progress: callback receiving ``"epoch k"`` events with ``loss`` and ``adv_acc``.
        classifier_name: how the classifier is named in the checkpoint (its name or path).
        **options: fields of :class:`GeneratorTrainConfig` (``generator``, ``width``, ``eps``,
            ``norm``, ``epochs``, ``batch_size``, ``optimizer``, ``lr``, ``momentum``, ``seed``,
            ``checkpoint_every``, ``max_steps``), replacing those of ``config``.

    Returns:
        A :class:`GeneratorTrainResult`.

    Raises:
        ParameterError: for a bad argument.
        CheckpointError: for a checkpoint that cannot be resumed.
        TypeError: for an unknown option.
    """
    cfg = _with_options(config, options)
    cfg.validate()
    dev = torch.device(device)
    model = as_model(classifier).to(dev).eval()
    torch.manual_seed(cfg.seed)
    gen = generator_for(cfg.generator, tuple(data.x.shape[1:]), data.num_classes, cfg.width, cfg.norm).to(dev).train()
    path = Path(out) if out is not None else None
    run = _GeneratorRun(model, gen, data, cfg, dev, path, classifier_name)
    if resume and path is not None and path.exists():
        run.resume()
    while run.epoch < cfg.epochs:
        if not run.train_epoch(progress):
            break  # max_steps reached
    run.checkpoint()
    return GeneratorTrainResult(steps=run.step, epochs=run.epoch, history=run.history,
                                path=str(path) if path is not None else None, generator=gen.eval())
