"""Conformance checks for attacks (see :func:`check_attack`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from advframe.attack import random_target
from advframe.errors import AdvframeError
from advframe.registry import RegistrationError
from advframe.registry import check_attack as registry_contract
from advframe.ops import derive_seed
from advframe.testing._core import (SNAKE_CASE, CountingModel, Finding, Findings, devices, instance, random_inputs,
                                    random_labels, toy_model)
from advframe.threat import NORMS, ThreatModel


def _traits(attack: Any, f: Findings) -> bool:
    """Check declared traits; False when the attack cannot be exercised at all."""
    name = getattr(attack, "name", None)
    if not isinstance(name, str) or not SNAKE_CASE.match(name):
        f.error("traits", f"name {name!r} is not snake_case (lower-case letters, digits and single "
                          f"underscores, starting with a letter): set the class attribute name")
    norms = getattr(attack, "norms", None)
    if not isinstance(norms, tuple) or not norms:
        f.error("traits", f"norms {norms!r} must be a non-empty tuple such as ('linf',) or ('linf', 'l2')")
        return False
    unknown = [n for n in norms if n not in NORMS]
    if unknown:
        f.error("traits", f"norms {unknown} are unknown: advframe knows {', '.join(NORMS)}")
        return False
    for trait in ("targetable", "uses_true_label"):
        if not isinstance(getattr(attack, trait, None), bool):
            f.error("traits", f"{trait} must be declared as a bool, got {getattr(attack, trait, None)!r}")
    try:
        registry_contract(type(attack))  # the same contract the registrar checks
    except RegistrationError as exc:
        f.error("traits", f"{exc}")
    if not isinstance(getattr(attack, "gradient_evaluations", None), int):
        f.error("traits", "gradient_evaluations must be an int counter (set it to 0 in __init__)")
    if not isinstance(getattr(attack, "params", None), dict):
        f.error("traits", "params must be a dict of the hyper-parameters the attack was built with")
    if not callable(attack):
        f.error("traits", "an attack must be callable as attack(model, x, y, threat, target=None)")
        return False
    return True


def _reset(attack: Any) -> None:
    if hasattr(attack, "reset_counter"):
        attack.reset_counter()
    elif isinstance(getattr(attack, "gradient_evaluations", None), int):
        attack.gradient_evaluations = 0


def _targets(y: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
    return random_target(y, num_classes, torch.Generator().manual_seed(derive_seed(seed, "targets")))


@dataclass(frozen=True)
class AttackCheckOptions:
    """The options of :func:`check_attack`, given to it as keywords.

    Attributes:
        input_shape: shape of one input (default: the model's ``input_shape`` or ``(1, 8, 8)``).
        num_classes: number of classes of the default model.
        eps: radii to check.
        bounds: the box of valid inputs.
        batch_size: examples per call.
        seed: seeds inputs, labels, targets and the attack's randomness.
        check_devices: devices to run on (default: cpu, and cuda when available).
        raise_errors: raise :class:`ConformanceError` when any error is found.
    """

    input_shape: Sequence[int] | None = None
    num_classes: int = 10
    eps: Sequence[float] = (0.0, 0.05, 0.3)
    bounds: tuple[float, float] = (0.0, 1.0)
    batch_size: int = 6
    seed: int = 0
    check_devices: Sequence[str | torch.device] | None = None
    raise_errors: bool = True


def _attack_options(options: dict[str, Any]) -> AttackCheckOptions:
    known = {f.name for f in fields(AttackCheckOptions)}
    for key in options:
        if key not in known:
            raise TypeError(f"check_attack() got an unexpected keyword argument '{key}'")
    return AttackCheckOptions(**options)


def check_attack(attack_factory: Any, model: nn.Module | None = None, **options: Any) -> list[Finding]:
    """Check that an attack honours the Attack contract.

    For each declared norm, each eps (0 included) and, when the attack is targetable,
    both untargeted and targeted threat models, on seeded random inputs (half of them
    labelled as the model predicts them, so that the attack has to search there):

    - the result has the input's shape, dtype and device, and passes
      :meth:`ThreatModel.audit` (inside the ball and the bounds, finite);
    - two calls after the same ``torch.manual_seed`` give identical results;
    - ``gradient_evaluations`` equals the backward passes a counting wrapper of the
      model saw;
    - an attack that declares ``uses_true_label = False`` gives the same result for
      other labels;
    - an unsupported norm, and a targeted threat for a non-targetable attack, are
      refused with an :class:`~advframe.errors.AdvframeError`.

    Args:
        attack_factory: an attack class, a zero-argument callable returning a fresh
            attack (e.g. ``functools.partial(MyAttack, steps=3)``), or an attack object.
        model: the model to attack (default: a seeded toy classifier of ``input_shape``).
        **options: the fields of :class:`AttackCheckOptions`, as keywords: ``input_shape``,
            ``num_classes`` (10), ``eps`` ((0, 0.05, 0.3)), ``bounds`` ((0, 1)), ``batch_size``
            (6), ``seed`` (0), ``check_devices`` (cpu, and cuda when available) and
            ``raise_errors`` (True).

    Returns:
        The findings (warnings only, unless ``raise_errors`` is False).

    Raises:
        TypeError: for an unknown option.
    """
    opts = _attack_options(options)
    attack = instance(attack_factory)
    f = Findings(f"attack '{getattr(attack, 'name', type(attack).__name__)}'")
    if not _traits(attack, f):
        return f.finish(opts.raise_errors)
    shape = tuple(opts.input_shape or getattr(model, "input_shape", None) or (1, 8, 8))
    base = model if model is not None else toy_model(shape, opts.num_classes, opts.seed)
    num_classes = opts.num_classes
    if model is not None:
        num_classes = int(base(random_inputs(1, shape, opts.bounds, opts.seed)).shape[1])
    for dev in [torch.device(d) for d in (opts.check_devices or devices())]:
        _check_on_device(attack, base, shape, num_classes, opts, dev, f)
    return f.finish(opts.raise_errors)


def _check_on_device(attack: Any, base: nn.Module, shape: tuple[int, ...], num_classes: int,
                     opts: AttackCheckOptions, dev: torch.device, f: Findings) -> None:
    """Every declared norm, targeting and eps on ``dev``, then the refusals."""
    counting = CountingModel(base).to(dev).eval()
    x = random_inputs(opts.batch_size, shape, opts.bounds, opts.seed).to(dev)
    y = random_labels(opts.batch_size, num_classes, opts.seed).to(dev)
    with torch.no_grad():  # half the batch labelled as the model predicts it: attacks must search there
        half = opts.batch_size // 2
        y[:half] = counting.predict(counting(x[:half]))
    t = _targets(y.cpu(), num_classes, opts.seed).to(dev)
    for norm in attack.norms:
        for targeted in ((False, True) if attack.targetable else (False,)):
            for e in opts.eps:
                threat = ThreatModel(norm=norm, eps=float(e), bounds=opts.bounds, targeted=targeted)
                where = f"{norm} eps={float(e):g}{' targeted' if targeted else ''} on {dev.type}"
                _check_call(attack, counting, Case(x, y, t if targeted else None, threat, where, opts.seed), f)
    _check_refusals(attack, counting, x, y, t, opts.bounds, f, dev)


class InputModified(RuntimeError):
    """The attack wrote into the clean inputs or labels it was given."""


def _run(attack: Any, model: CountingModel, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None,
         threat: ThreatModel, seed: int) -> torch.Tensor:
    _reset(attack)
    model.reset()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    xc, yc = x.clone(), y.clone()
    out = attack(model, xc, yc, threat, target)
    if not (torch.equal(xc, x) and torch.equal(yc, y)):
        raise InputModified("it modified the clean inputs or labels in place: work on a copy (x.clone())")
    return out


@dataclass(frozen=True)
class Case:
    """One call the kit makes: inputs, labels, targets, threat model, a description, the seed."""

    x: torch.Tensor
    y: torch.Tensor
    target: torch.Tensor | None
    threat: ThreatModel
    where: str
    seed: int


def _check_call(attack: Any, model: CountingModel, case: Case, f: Findings) -> None:
    x, y, target, threat, where, seed = case.x, case.y, case.target, case.threat, case.where, case.seed
    ok, adv = f.guard(f"call ({where})", _run, attack, model, x, y, target, threat, seed)
    if not ok:
        return
    if not isinstance(adv, torch.Tensor):
        f.error("output", f"({where}) returned {type(adv).__name__}, expected a tensor")
        return
    if adv.shape != x.shape:
        f.error("output", f"({where}) returned shape {tuple(adv.shape)}, expected {tuple(x.shape)}")
        return
    if adv.dtype != x.dtype:
        f.error("output", f"({where}) returned dtype {adv.dtype}, expected {x.dtype}")
    if adv.device != x.device:
        f.error("output", f"({where}) returned a tensor on {adv.device}, expected {x.device}: "
                          f"create tensors with device=x.device")
        return
    report = threat.audit(adv, x)
    if not report.ok:
        f.error("audit", f"({where}) {report.violations} example(s) leave the threat model "
                         f"(excess {report.max_excess:.3g}, {report.nonfinite} non-finite): "
                         f"end with threat.project(x_adv, x)")
    if any(p.grad is not None for p in model.parameters()):
        f.error("parameter_gradients", f"({where}) left .grad on the model's parameters: compute input gradients "
                                       f"with torch.autograd.grad(loss, x), not loss.backward()")
    counted, seen = attack.gradient_evaluations, model.backwards
    if counted != seen:
        f.error("gradient_evaluations", f"({where}) reports {counted} gradient evaluation(s) but the model saw "
                                        f"{seen} backward pass(es): count every forward+backward pass once")
    again = _run(attack, model, x, y, target, threat, seed)
    if not torch.equal(again, adv):
        diff = float((again - adv).abs().max())
        f.error("determinism", f"({where}) two calls after torch.manual_seed({seed}) differ by up to {diff:.3g}: "
                               f"draw random numbers from torch's global generator or a generator seeded from it")
    if not getattr(attack, "uses_true_label", True) and target is None:
        other = (y + 1) % max(2, int(model(x[:1]).shape[1]))
        blind = _run(attack, model, x, other, None, threat, seed)
        if not torch.equal(blind, adv):
            f.error("uses_true_label", f"({where}) declares uses_true_label = False but its result changes "
                                       f"with the labels: declare uses_true_label = True")


def _check_refusals(attack: Any, model: CountingModel, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor,
                    bounds: tuple[float, float], f: Findings, dev: torch.device) -> None:
    for norm in NORMS:
        if norm in attack.norms:
            continue
        threat = ThreatModel(norm=norm, eps=0.1, bounds=bounds)
        problem = _refusal(attack, model, x, y, threat, None)
        if problem:
            f.error("refusal", f"(norm {norm}, not declared, on {dev.type}) {problem}: call "
                               f"self.check_threat(threat, target) or raise advframe.errors.ParameterError")
    if not attack.targetable:
        threat = ThreatModel(norm=attack.norms[0], eps=0.1, bounds=bounds, targeted=True)
        problem = _refusal(attack, model, x, y, threat, t)
        if problem:
            f.error("refusal", f"(targeted, declared targetable = False, on {dev.type}) {problem}: call "
                               f"self.check_threat(threat, target) or raise advframe.errors.ParameterError")


def _refusal(attack: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
             target: torch.Tensor | None) -> str | None:
    """None when the attack refuses ``threat`` with an AdvframeError, else what it did instead."""
    try:
        attack(model, x, y, threat, target)
    except AdvframeError:
        return None
    except Exception as exc:
        return f"fails with {type(exc).__name__} instead of a readable advframe error"
    return "accepts it"
