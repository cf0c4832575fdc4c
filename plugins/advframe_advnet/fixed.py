"""Training a generator against a FIXED classifier (paper 004 §4.5, Table 5).

The generator G maximises the classifier's loss on ``clip(x + ε·G(x))``; the classifier
does not move. Paper 004 runs SGD (step 0.01, momentum 0.9) for 200k iterations and
reports the classifier's test accuracy under the trained G (its Table 5): the wide
encoder–decoder G1 comes close to PGD against an undefended model.

Checkpoints (format ``advframe.generator/1``) hold the generator (``generator.*``), the
optimiser (``optim.state.*``) and the position, written atomically; ``resume`` continues
an interrupted run and ends with the weights of an uninterrupted one.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from advframe.checkpoint import load_checkpoint, save_checkpoint
from advframe.dataset import LabeledData
from advframe.errors import CheckpointError, ParameterError
from advframe.model import as_model
from advframe.progress import ProgressCallback, emit
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


def train_generator(classifier: Any, data: LabeledData, *, generator: str = "g1", width: int = 64,
                    eps: float = 0.3, norm: str = "linf", epochs: int = 1, batch_size: int = 64,
                    optimizer: str = "sgd", lr: float = 0.01, momentum: float = 0.9, seed: int = 0,
                    out: str | os.PathLike[str] | None = None, checkpoint_every: int | None = None,
                    resume: bool = False, max_steps: int | None = None, device: str | torch.device = "cpu",
                    progress: ProgressCallback = None, classifier_name: str | None = None) -> GeneratorTrainResult:
    """Train generator ``generator`` to raise ``classifier``'s loss; the classifier stays fixed.

    Args:
        classifier: the fixed model (eval mode; its own ``loss`` is maximised).
        data: training examples (images, square).
        generator: ``g1``, ``g2`` or ``g3``.
        width: k (paper: 8 "narrow" and 64 "wide").
        eps: ε of the perturbations.
        norm: ``linf`` or ``l2``.
        epochs: passes over ``data``.
        batch_size: minibatch size.
        optimizer: ``sgd`` (default, with ``momentum``), ``adam`` or ``rmsprop``.
        lr: learning rate (paper: 0.01).
        momentum: momentum (paper: 0.9).
        seed: fixes G's initial weights, the order of every epoch and G2's z.
        out: checkpoint path, written atomically at the end and every ``checkpoint_every`` steps.
        checkpoint_every: steps between checkpoints.
        resume: continue from ``out`` when it exists.
        max_steps: stop after this many steps in total (a checkpoint is written).
        device: ``cpu``, ``cuda``...
        progress: callback receiving ``"epoch k"`` events with ``loss`` and ``adv_acc``.
        classifier_name: how the classifier is named in the checkpoint (its name or path).

    Returns:
        A :class:`GeneratorTrainResult`.

    Raises:
        ParameterError: for a bad argument.
        CheckpointError: for a checkpoint that cannot be resumed.
    """
    TrainOptions(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, momentum=momentum, seed=seed,
                 checkpoint_every=checkpoint_every, max_steps=max_steps).validate()  # the training loop's checks
    if not (eps >= 0 and math.isfinite(eps)):
        raise ParameterError(f"eps must be a finite number >= 0, got {eps}")
    dev = torch.device(device)
    model = as_model(classifier).to(dev).eval()
    torch.manual_seed(seed)
    gen = generator_for(generator, tuple(data.x.shape[1:]), data.num_classes, width, norm).to(dev).train()
    params = [p for p in gen.parameters() if p.requires_grad]
    opt = make_optimizer(optimizer, params, lr, momentum, 0.0)
    bounds = (float(data.bounds[0]), float(data.bounds[1]))
    n = len(data)
    per_epoch = math.ceil(n / batch_size)
    args = {"epochs": epochs, "batch_size": batch_size, "optimizer": optimizer, "lr": lr, "momentum": momentum,
            "seed": seed, "examples": n, "eps": eps}
    base = {"format": GENERATOR_FORMAT, "generator_config": gen.config(), "eps": eps, "norm": norm,
            "classifier": classifier_name, "dataset": data.name, "train_args": args}
    path = Path(out) if out is not None else None
    step, epoch, batch = 0, 0, 0
    history: list[dict[str, float]] = []
    sums: dict[str, float] = {}
    if resume and path is not None and path.exists():
        tensors, meta = load_checkpoint(path)
        if meta.get("format") != GENERATOR_FORMAT:
            raise CheckpointError(f"cannot resume from '{path}': it is not a generator checkpoint; pass another --out")
        for key in ("generator_config", "classifier", "train_args"):
            if meta.get(key) != base[key]:
                raise CheckpointError(f"cannot resume from '{path}': it was trained with {key}={meta.get(key)!r}, "
                                      f"this run asks for {base[key]!r}; use the same settings or another --out")
        gen.load_state_dict({k[len("generator."):]: v for k, v in tensors.items() if k.startswith("generator.")})
        opt.load_state_dict(unflatten_optimizer(tensors, meta["optimizer_state"]))
        step, epoch, batch = int(meta["step"]), int(meta["epoch"]), int(meta["batch"])
        history, sums = list(meta.get("history") or []), dict(meta.get("epoch_sums") or {})

    def checkpoint() -> None:
        if path is None:
            return
        opt_tensors, opt_meta = flatten_optimizer(opt.state_dict())
        tensors = {f"generator.{k}": v for k, v in gen.state_dict().items()}
        tensors.update(opt_tensors)
        save_checkpoint(path, tensors, {**base, "optimizer_state": opt_meta, "step": step, "epoch": epoch,
                                        "batch": batch, "history": history, "epoch_sums": sums})

    stopped = False
    while epoch < epochs and not stopped:
        order = epoch_order(n, seed, epoch)
        while batch < per_epoch:
            if max_steps is not None and step >= max_steps:
                stopped = True
                break
            idx = order[batch * batch_size:(batch + 1) * batch_size]
            x, y = data.x[idx].to(dev), data.y[idx].to(dev)
            noise = torch.Generator().manual_seed((seed * 1_000_003 + step) % (2 ** 63))
            with torch.enable_grad():
                outputs = model(gen.perturb(x, y, eps, bounds, noise))
                loss = model.loss(outputs, y).mean()
                grads = torch.autograd.grad(loss, params)  # the classifier's parameters get no .grad
            for p, g in zip(params, grads):
                p.grad = -g  # gradient ascent on the classifier's loss
            opt.step()
            with torch.no_grad():
                adv_acc = float((model.predict(outputs) == y).float().mean())
            loss_value = float(loss.detach())
            step += 1
            batch += 1
            add_to_epoch(sums, len(idx), {"loss": loss_value, "adv_acc": adv_acc})
            emit(progress, f"epoch {epoch + 1}", batch, per_epoch, loss=loss_value, adv_acc=adv_acc)
            if checkpoint_every is not None and step % checkpoint_every == 0:
                checkpoint()
        if stopped:
            break
        close_epoch(history, sums, epoch, step)
        epoch += 1
        batch = 0
    checkpoint()
    return GeneratorTrainResult(steps=step, epochs=epoch, history=history,
                                path=str(path) if path is not None else None, generator=gen.eval())
