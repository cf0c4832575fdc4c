"""Conformance checks for models, data sets and defenses."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advframe.dataset import Dataset, LabeledData
from advframe.errors import AdvframeError
from advframe.model import as_model
from advframe.testing._core import SNAKE_CASE, Finding, Findings, devices, instance, random_inputs, random_labels


def check_model(model: nn.Module, *, input_shape: Sequence[int] | None = None,
                bounds: tuple[float, float] = (0.0, 1.0), batch_size: int = 5, seed: int = 0,
                check_devices: Sequence[str | torch.device] | None = None,
                raise_errors: bool = True) -> list[Finding]:
    """Check that a model follows the Model protocol.

    Checks, in eval mode on seeded random inputs inside ``bounds``: outputs of shape
    ``(N, C)``; ``loss(outputs, y)`` of shape ``(N,)``, finite, with a finite non-zero
    input gradient; ``predict`` of shape ``(N,)`` with classes in ``0..C-1`` that hold
    the highest ``scores``; ``scores`` of shape ``(N, C)``; identical outputs for
    two calls and for an example alone or in a batch.

    Args:
        model: the model (a plain classifier is wrapped, as advframe does).
        input_shape: shape of one input (default: the model's ``input_shape`` attribute).
        bounds: the box of valid inputs.
        batch_size: examples per call.
        seed: seeds inputs and labels.
        check_devices: devices to run on (default: cpu, and cuda when available).
        raise_errors: raise :class:`ConformanceError` when any error is found.

    Raises:
        ValueError: when no input shape is given or declared.
    """
    shape = tuple(input_shape or getattr(model, "input_shape", None) or ())
    if not shape:
        raise ValueError("check_model needs input_shape=(C, H, W) (or a model with an input_shape attribute)")
    f = Findings(f"model '{getattr(model, 'name', '') or type(model).__name__}'")
    if not isinstance(model, nn.Module):
        f.error("protocol", f"is a {type(model).__name__}, not a torch.nn.Module")
        return f.finish(raise_errors)
    net = as_model(model)
    for dev in [torch.device(d) for d in (check_devices or devices())]:
        net = net.to(dev).eval()
        x = random_inputs(batch_size, shape, bounds, seed).to(dev)
        ok, out = f.guard(f"forward ({dev.type})", net, x)
        if not ok:
            continue
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != batch_size:
            f.error("forward", f"({dev.type}) outputs have shape {tuple(getattr(out, 'shape', ()))}, "
                               f"expected (N, num_classes) = ({batch_size}, C)")
            continue
        num_classes = int(out.shape[1])
        y = random_labels(batch_size, num_classes, seed).to(dev)
        _check_decision_rule(net, out, y, num_classes, dev, f)
        _check_gradient(net, x, y, dev, f)
        with torch.no_grad():
            again, alone = net(x), net(x[:1])
        if not torch.equal(again, out.detach()):
            f.error("eval_determinism", f"({dev.type}) two forward passes in eval mode differ: disable dropout "
                                        f"and other randomness in eval mode")
        if not torch.allclose(alone, out.detach()[:1], atol=1e-4, rtol=1e-4):
            f.error("batch_independence", f"({dev.type}) an example's output depends on the rest of its batch "
                                          f"in eval mode (batch norm in train mode?)")
    return f.finish(raise_errors)


def _check_decision_rule(net: Any, out: torch.Tensor, y: torch.Tensor, num_classes: int, dev: torch.device,
                         f: Findings) -> None:
    n = out.shape[0]
    ok, loss = f.guard(f"loss ({dev.type})", net.loss, out, y)
    if ok and (not isinstance(loss, torch.Tensor) or tuple(loss.shape) != (n,)):
        f.error("loss", f"({dev.type}) loss(outputs, y) has shape {tuple(getattr(loss, 'shape', ()))}, expected "
                        f"({n},): return the per-example loss (reduction='none')")
    elif ok and not bool(torch.isfinite(loss).all()):
        f.error("loss", f"({dev.type}) loss(outputs, y) holds NaN or infinite values")
    ok, pred = f.guard(f"predict ({dev.type})", net.predict, out)
    ok_s, scores = f.guard(f"scores ({dev.type})", net.scores, out)
    if ok and (not isinstance(pred, torch.Tensor) or tuple(pred.shape) != (n,)):
        f.error("predict", f"({dev.type}) predict(outputs) has shape {tuple(getattr(pred, 'shape', ()))}, "
                           f"expected ({n},)")
        ok = False
    if ok and (pred.dtype != torch.long or int(pred.min()) < 0 or int(pred.max()) >= num_classes):
        f.error("predict", f"({dev.type}) predict(outputs) must give long class indices in 0..{num_classes - 1}")
        ok = False
    if ok_s and (not isinstance(scores, torch.Tensor) or tuple(scores.shape) != (n, num_classes)):
        f.error("scores", f"({dev.type}) scores(outputs) has shape {tuple(getattr(scores, 'shape', ()))}, "
                          f"expected ({n}, {num_classes})")
        ok_s = False
    if ok and ok_s:
        best = scores.gather(1, pred.view(-1, 1)).squeeze(1)
        if not bool((best >= scores.max(dim=1).values).all()):
            f.error("scores", f"({dev.type}) the predicted class does not hold the highest score: scores must be "
                              f"higher for more likely classes (least-likely targets and top-5 rely on it)")


def _check_gradient(net: Any, x: torch.Tensor, y: torch.Tensor, dev: torch.device, f: Findings) -> None:
    def grad() -> torch.Tensor:
        xr = x.clone().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(net.loss(net(xr), y).sum(), xr)
        return g

    ok, g = f.guard(f"input_gradient ({dev.type})", grad)
    if not ok:
        return
    if not bool(torch.isfinite(g).all()):
        f.error("input_gradient", f"({dev.type}) the loss gradient w.r.t. the input holds NaN or infinite values")
    elif float(g.abs().max()) == 0.0:
        f.warn("input_gradient", f"({dev.type}) the loss gradient w.r.t. the input is exactly zero on random "
                                 f"inputs: gradient attacks will not move (masked or saturated gradients?)")


def _digest(data: LabeledData) -> list[str]:
    flat = data.x.reshape(len(data), -1).contiguous().cpu().numpy()
    return [hashlib.sha1(row.tobytes()).hexdigest() for row in flat]


def check_dataset(dataset: Any, *, data_dir: str | Path | None = None, splits: Sequence[str] | None = None,
                  raise_errors: bool = True) -> list[Finding]:
    """Check that a data set follows the Dataset protocol.

    Checks the declared traits (snake_case name, ``num_classes`` >= 2, ``lo < hi``
    bounds, ``splits``, non-negative ``default_eps``, ``input_shape``), then loads each
    split: :meth:`LabeledData.validate` passes, inputs are float with the declared
    shape, labels are long, a second load is identical, an unknown split is refused
    with an :class:`~advframe.errors.AdvframeError`. Examples shared by two splits give
    a warning. A :class:`LabeledData` is validated on its own.

    Args:
        dataset: a Dataset class, zero-argument factory, instance, or a LabeledData.
        data_dir: the folder for data sets that read files (``needs_data_dir``).
        splits: splits to load (default: all declared).
        raise_errors: raise :class:`ConformanceError` when any error is found.
    """
    ds = instance(dataset)
    if isinstance(ds, LabeledData):
        return _check_labeled_data(ds).finish(raise_errors)
    f = Findings(f"dataset '{getattr(ds, 'name', type(ds).__name__)}'")
    if not isinstance(ds, Dataset):
        f.error("protocol", f"is a {type(ds).__name__}: subclass advframe.Dataset and implement read()")
        return f.finish(raise_errors)
    _check_dataset_traits(ds, f)
    if any(i.severity == "error" for i in f.items):
        return f.finish(raise_errors)
    if ds.needs_data_dir and data_dir is None:
        f.warn("load", "reads files from a folder: pass data_dir= to check its splits")
        return f.finish(raise_errors)
    root = Path(data_dir) if data_dir is not None else None
    digests: dict[str, set[str]] = {}
    for split in (splits or ds.splits):
        data = _check_split(ds, split, root, f)
        if data is not None:
            digests[split] = set(_digest(data))
    _check_shared_examples(digests, f)
    _check_unknown_split(ds, root, f)
    return f.finish(raise_errors)


def _check_labeled_data(data: LabeledData) -> Findings:
    f = Findings(f"data '{data.name}/{data.split}'")
    f.guard("validate", data.validate)
    if data.y.dtype != torch.long:
        f.error("labels", f"labels have dtype {data.y.dtype}, expected torch.long")
    return f


def _check_dataset_traits(ds: Dataset, f: Findings) -> None:
    if not isinstance(ds.name, str) or not SNAKE_CASE.match(ds.name):
        f.error("traits", f"name {ds.name!r} is not snake_case")
    if not isinstance(ds.num_classes, int) or ds.num_classes < 2:
        f.error("traits", f"num_classes {ds.num_classes!r} must be an int >= 2")
    lo, hi = (tuple(ds.bounds) + (None, None))[:2]
    if not (isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and math.isfinite(lo)
            and math.isfinite(hi) and lo < hi):
        f.error("traits", f"bounds {ds.bounds!r} must be finite (lo, hi) with lo < hi")
    if not ds.splits or not all(isinstance(s, str) for s in ds.splits):
        f.error("traits", f"splits {ds.splits!r} must be a non-empty tuple of names")
    if any(not isinstance(e, (int, float)) or not math.isfinite(e) or e < 0 for e in ds.default_eps):
        f.error("traits", f"default_eps {ds.default_eps!r} must hold finite numbers >= 0")
    if not ds.input_shape:
        f.warn("traits", "input_shape is not declared: models and checks cannot know the input shape")


def _check_split(ds: Dataset, split: str, root: Path | None, f: Findings) -> LabeledData | None:
    """Load ``split`` twice and check it; the data, or None when it could not be checked."""
    ok, data = f.guard(f"load '{split}'", ds.load, split, root)
    if not ok:
        return None
    if not isinstance(data, LabeledData):
        f.error("load", f"load('{split}') returned {type(data).__name__}, expected LabeledData")
        return None
    if len(data) == 0:
        f.error("load", f"split '{split}' is empty")
        return None
    if ds.input_shape and tuple(data.x.shape[1:]) != tuple(ds.input_shape):
        f.error("shape", f"split '{split}' inputs have shape {tuple(data.x.shape[1:])}, declared input_shape "
                         f"is {tuple(ds.input_shape)}")
    if data.y.dtype != torch.long:
        f.error("labels", f"split '{split}' labels have dtype {data.y.dtype}, expected torch.long")
    if data.num_classes != ds.num_classes:
        f.error("labels", f"split '{split}' reports {data.num_classes} classes, declared {ds.num_classes}")
    ok, again = f.guard(f"reload '{split}'", ds.load, split, root)
    if ok and not (torch.equal(again.x, data.x) and torch.equal(again.y, data.y)):
        f.error("determinism", f"loading split '{split}' twice gives different data: fix the split's seed")
    return data


def _check_shared_examples(digests: dict[str, set[str]], f: Findings) -> None:
    names = list(digests)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = len(digests[a] & digests[b])
            if shared:
                f.warn("splits", f"splits '{a}' and '{b}' share {shared} identical input(s)")


def _check_unknown_split(ds: Dataset, root: Path | None, f: Findings) -> None:
    try:
        ds.load("no_such_split", root)
        f.error("splits", "load('no_such_split') did not raise: an unknown split must raise DataError")
    except AdvframeError:
        pass
    except Exception as exc:
        f.error("splits", f"an unknown split raised {type(exc).__name__} instead of advframe's DataError")


def check_defense(defense_factory: Any, model: nn.Module, data: LabeledData, *, steps: int = 2,
                  batch_size: int = 8, seed: int = 0, raise_errors: bool = True) -> list[Finding]:
    """Check that a defense (a training procedure) follows the Defense protocol.

    Calls ``setup`` with the context the training loop gives, then ``training_loss`` on
    ``steps`` minibatches: the loss is a finite scalar that depends on the model's
    parameters (finite gradients after ``backward``); no parameter gradient is left
    behind by ``training_loss`` itself; the statistics are a ``str -> float`` map;
    ``state_dict`` is JSON-serialisable and restores through ``load_state_dict``;
    ``tensors`` is a ``str -> Tensor`` map.

    Args:
        defense_factory: a Defense class, zero-argument factory, or instance.
        model: a model to train (it is trained for ``steps`` SGD steps in place).
        data: training data.
        steps: minibatches to run.
        batch_size: minibatch size.
        seed: passed in the setup context and to ``torch.manual_seed``.
        raise_errors: raise :class:`ConformanceError` when any error is found.
    """
    from advframe.threat import ThreatModel

    dfn = instance(defense_factory)
    f = Findings(f"defense '{getattr(dfn, 'name', '') or type(dfn).__name__}'")
    name = getattr(dfn, "name", None)
    if not isinstance(name, str) or not SNAKE_CASE.match(name):
        f.error("traits", f"name {name!r} is not snake_case")
    net = as_model(model).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    context = {"device": torch.device("cpu"), "seed": seed, "epochs": 1, "steps_per_epoch": steps,
               "total_steps": steps, "threat": ThreatModel(bounds=tuple(data.bounds)), "batch_size": batch_size}
    ok, _ = f.guard("setup", dfn.setup, net, data, context)
    if not ok:
        return f.finish(raise_errors)
    torch.manual_seed(seed)
    for step, (_, x, y) in zip(range(steps), data.batches(batch_size)):
        opt.zero_grad(set_to_none=True)
        if not _check_training_step(dfn, net, (x, y), step, f):
            break
        opt.step()
    _check_defense_state(dfn, f)
    return f.finish(raise_errors)


def _check_training_step(dfn: Any, net: Any, batch: tuple[torch.Tensor, torch.Tensor], step: int,
                         f: Findings) -> bool:
    """``training_loss`` on one minibatch, then ``backward``; False when the loop cannot go on."""
    x, y = batch
    ok, res = f.guard(f"training_loss (step {step})", dfn.training_loss, net, x, y, step)
    if not ok:
        return False
    if not (isinstance(res, tuple) and len(res) == 2):
        f.error("training_loss", "must return (loss, stats)")
        return False
    loss, stats = res
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        f.error("training_loss", f"loss must be a scalar tensor, got shape {tuple(getattr(loss, 'shape', ()))}")
        return False
    if not bool(torch.isfinite(loss)):
        f.error("training_loss", f"(step {step}) the loss is not finite")
        return False
    leaked = [n for n, p in net.named_parameters() if p.grad is not None and bool(p.grad.abs().sum() > 0)]
    if leaked:
        f.error("parameter_gradients", f"training_loss left gradients in parameters {leaked[:3]}: compute "
                                       f"input gradients with torch.autograd.grad, not .backward()")
    if not isinstance(stats, dict) or not all(isinstance(k, str) and isinstance(v, (int, float))
                                              for k, v in stats.items()):
        f.error("stats", f"statistics must be a dict of str -> float, got {stats!r}")
    if not loss.requires_grad:
        f.error("training_loss", "the loss does not depend on the model's parameters")
        return False
    loss.backward()
    if any(p.grad is not None and not bool(torch.isfinite(p.grad).all()) for p in net.parameters()):
        f.error("training_loss", f"(step {step}) parameter gradients hold NaN or infinite values")
    return True


def _check_defense_state(dfn: Any, f: Findings) -> None:
    """``state_dict`` is JSON and restores; ``tensors`` is a tensor map."""
    ok, state = f.guard("state_dict", dfn.state_dict)
    if ok:
        try:
            restored = json.loads(json.dumps(state))
            f.guard("load_state_dict", dfn.load_state_dict, restored)
        except (TypeError, ValueError) as exc:
            f.error("state_dict", f"state_dict() is not JSON-serialisable: {exc}")
    ok, tensors = f.guard("tensors", dfn.tensors)
    if ok and not (isinstance(tensors, dict) and all(isinstance(v, torch.Tensor) for v in tensors.values())):
        f.error("tensors", "tensors() must return a dict of str -> Tensor")
