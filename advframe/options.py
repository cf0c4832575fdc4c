"""Settings of a run over attacks (evaluation; plugins extend them), and the attacks a run resolves.

:func:`advframe.evaluate` (and the transfer plugin's ``transfer``) take their settings as
keywords; these dataclasses name, type and validate them in one place, so that an
unknown or bad setting gets one clear error.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import torch

from advframe import plugins
from advframe.attack import fixed_steps
from advframe.engine import AttackSpec
from advframe.errors import Hint, ParameterError
from advframe.params import check_seed_value, declared_params, split_params
from advframe.progress import ProgressCallback

TARGET_MODES = ("random", "least_likely")


DEVICE_TYPES = ("cpu", "cuda")


def resolve_device(device: Any, option: str = "device") -> torch.device:
    """The one device resolver: ``device`` as a :class:`torch.device`.

    ``auto`` is cuda when a GPU is available, else cpu; ``cpu``, ``cuda`` and ``cuda:N``
    are taken as they are. A name torch does not know, a device other than the CPU or
    CUDA, or CUDA without a GPU is refused.

    Args:
        device: ``"auto"``, a device name or a :class:`torch.device`.
        option: how the caller names the setting in the message: ``"device"`` for Python
            callers (the value is quoted), ``"--device"`` for the command line.

    Raises:
        ParameterError: naming the device and the ones to use instead.
    """
    cli = option.startswith("--")
    named = f"{option} {device}" if cli else f"{option} {device!r}"
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        dev = None
    if dev is None or dev.type not in DEVICE_TYPES:
        raise ParameterError(f"{named} is unknown: use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        use = "--device cpu" if cli else "'cpu'"
        raise ParameterError(f"{named}: no CUDA device is available here; use {use}")
    return dev


_SettingsT = TypeVar("_SettingsT", bound="Settings")


@dataclass(frozen=True)
class Settings:
    """Base of typed keyword settings: :meth:`of` refuses unknown keys and validates."""

    @classmethod
    def of(cls: type[_SettingsT], options: Mapping[str, Any]) -> _SettingsT:
        """Build from keyword settings; an unknown one is a :class:`ParameterError`."""
        known = [f.name for f in fields(cls)]
        for key in options:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"known settings: {', '.join(known)}"
                raise ParameterError(f"unknown setting '{key}': {hint}")
        opts = cls(**options)
        opts.validate()
        return opts

    def validate(self) -> None:
        """Refuse settings that cannot be used (subclasses check their own)."""


@dataclass(frozen=True)
class RunOptions(Settings):
    """Settings every attack run shares.

    Attributes:
        norm: ``"linf"`` or ``"l2"``.
        params: hyper-parameters: ``{key: value}`` for every attack that takes ``key``,
            and ``{attack_name: {key: value}}`` for one attack (which wins).
        batch_size: examples per batch.
        limit: use only the first ``limit`` examples.
        device: where to run: ``auto`` (cuda when available), ``cpu``, ``cuda`` or ``cuda:N``
            (see :func:`resolve_device`).
        seed: seeds random starts, random targets and noise, per batch position (see
            :func:`advframe.engine.attack_seed`).
        bounds: valid input range (default: the data set's, else (0, 1)).
        progress: callback receiving :class:`~advframe.progress.ProgressEvent` objects
            (:func:`advframe.evaluate` sends task ``"evaluate"``, counted in examples: one
            event before the first batch, then one after each batch).
        strict: raise :class:`~advframe.errors.ThreatViolation` on the first refused batch.
        amp: the attacks' forward passes under bf16 autocast (for CUDA); the adversarial
            batches are audited and classified in float32 (:mod:`advframe.precision`).
        channels_last: NHWC memory layout for model and inputs; None: on CUDA for conv
            nets on images, off on CPU (so CPU results are unchanged). Like the move to
            ``device``, it converts the given model in place.
    """

    norm: str = "linf"
    params: Mapping[str, Any] | None = None
    batch_size: int = 250
    limit: int | None = None
    device: str | torch.device = "cpu"
    seed: int = 0
    bounds: tuple[float, float] | None = None
    progress: ProgressCallback = None
    strict: bool = False
    amp: bool = False
    channels_last: bool | None = None

    def validate(self) -> None:
        """Refuse settings no run can use."""
        check_seed_value(self.seed)
        if resolve_device(self.device).type != "cuda" and self.amp:
            raise ParameterError("amp (bf16 autocast) needs a CUDA device: drop {amp} or use {device}",
                                 hint=(Hint("amp", True), Hint("device", "cuda")))
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ParameterError(f"batch size {self.batch_size} is invalid: use a positive integer")
        if self.limit is not None and (isinstance(self.limit, bool) or not isinstance(self.limit, int)
                                       or self.limit < 1):
            raise ParameterError(f"limit {self.limit} is invalid: use a positive integer")


@dataclass(frozen=True)
class EvalOptions(RunOptions):
    """Settings of :func:`advframe.evaluate`, beyond :class:`RunOptions`.

    Attributes:
        targeted: run targeted attacks; targets from ``target``.
        target: ``"random"`` (seeded, a class other than the label) or ``"least_likely"``.
        label_leaks: ``None`` (default) measures the predicted-label twin of attacks that
            declare ``leaks_labels`` (one-step attacks reading the true label, Kurakin
            §4.2); ``True`` of every attack that reads the true label; ``False`` of none.
        state_path: a JSON file where partial sums are saved atomically after every
            batch; an interrupted evaluation with the same settings resumes from it. A
            path is deleted when the evaluation returns; a
            :class:`~advframe.evaluation.ResumeState` is left to its caller to discard.
        model_name: the name to report (default: the registry name or class name).
        worst_case: worst-case robust accuracy over the attacks, in the given order: each
            attack runs only on the examples every earlier one failed on (see
            :mod:`advframe.worst_case`); the document gains ``worst_case``.
    """

    targeted: bool = False
    target: str = "random"
    label_leaks: bool | None = None
    state_path: str | os.PathLike[str] | None = None
    model_name: str | None = None
    worst_case: bool = False

    def validate(self) -> None:
        super().validate()
        if self.worst_case and self.targeted:
            raise ParameterError("worst-case robust accuracy is untargeted: drop --targeted or --worst-case")
        if self.target not in TARGET_MODES:
            raise ParameterError(f"target mode '{self.target}' is unknown: use one of {', '.join(TARGET_MODES)}")
        if self.state_path is not None and os.path.isdir(self.state_path):
            raise ParameterError(f"state_path '{self.state_path}' is a folder: pass a file name inside it")


def default_attacks() -> list[str]:
    """The attacks a run uses when none is named: those plugins declared as the default."""
    default = plugins.registry().default("attacks")
    if default is None:
        raise ParameterError("no attack given and no plugin declares a default: pass --attack NAME "
                             "(see 'advframe list attacks')")
    return [default]


def fixed_step_spec(name: str, params: Mapping[str, Any]) -> AttackSpec:
    """The registered attack ``name`` built with ``params``, with fixed steps where it declares
    ``early_exit`` and ``params`` leave it unset (:func:`advframe.attack.fixed_steps`): the
    adversary of adversarial training and the held-out monitor, whose points are the last
    iterates of every example."""
    registry = plugins.registry()
    entry = registry.get("attacks", name)
    return AttackSpec(name, registry.build("attacks", name, **fixed_steps(entry.factory, params)), entry.plugin)


def resolve_attacks(attacks: Sequence[Any] | None, params: Mapping[str, Any] | None, *,
                    early_exit: bool = True) -> list[AttackSpec]:
    """Attack names or objects -> specs, with the one parameter path of :func:`split_params`.

    ``early_exit=False`` builds the named attacks with fixed steps where they declare
    ``early_exit`` and ``params`` leave it unset (:func:`advframe.attack.fixed_steps`).

    Raises:
        ParameterError: no attack, an unknown name, or a parameter no attack takes.
    """
    attacks = default_attacks() if attacks is None else list(attacks)
    if not attacks:
        raise ParameterError("no attack given: pass at least one --attack NAME (see 'advframe list attacks')")
    registry = plugins.registry()
    names = [a for a in attacks if isinstance(a, str)]
    declared = {n: declared_params(registry.get("attacks", n).factory) for n in names}
    per_attack = split_params(params, names, declared) if names else {}
    if params and not names:
        raise ParameterError("params apply to attacks given by name; set them on the attack objects instead")
    specs = []
    for a in attacks:
        if isinstance(a, str):
            entry = registry.get("attacks", a)
            chosen = per_attack[a] if early_exit else fixed_steps(entry.factory, per_attack[a])
            specs.append(AttackSpec(entry.name, registry.build("attacks", a, **chosen), entry.plugin))
        elif isinstance(a, AttackSpec):
            specs.append(a)
        elif callable(getattr(a, "grid", None)) or callable(getattr(a, "perturb", None)):
            specs.append(AttackSpec(a.name or type(a).__name__, a))
        else:
            raise ParameterError(f"attack {a!r} is neither an attack name nor an Attack object: pass e.g. "
                                 f"attacks=['NAME'] or attacks=[advframe.get_attack('NAME', KEY=VALUE)] ('advframe list attacks')")
    return specs
