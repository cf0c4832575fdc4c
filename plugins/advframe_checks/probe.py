"""The probe: a small subset of the evaluation data on which checks run their own attacks.

Checks that cannot read what they need from the evaluation's runs craft adversarial
examples themselves, through the engine (:mod:`advframe.engine`), on the first
``subset`` examples (200 by default) so that they cost seconds, not minutes. Attacks
are built by registry name (or taken from the evaluation's own attack objects); a name
that no plugin registered makes the check ``not_applicable``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from advframe import plugins
from advframe.attack import EARLY_EXIT
from advframe.engine import AttackSpec, Engine
from advframe.errors import AdvframeError, UnknownNameError
from advframe.model import Model
from advframe.threat import ThreatModel


class AttackUnavailable(Exception):
    """An attack a check needs is not registered, refuses the threat model, or misbehaves."""


@dataclass
class ProbeRun:
    """One attack run on the probe.

    Attributes:
        attack: the attack's name.
        eps: the radius.
        top1: accuracy of the attacked model on the adversarial examples.
        predictions: the attacked model's predictions on them.
    """

    attack: str
    eps: float
    top1: float
    predictions: torch.Tensor


class Probe:
    """A subset of the data with the model's clean predictions, and a way to attack it.

    Args:
        model: the model under evaluation (a Model, in eval mode, where ``x`` is).
        x: the subset's inputs, on the model's device.
        y: the subset's labels, on the same device.
        bounds: valid input range.
        norm: the evaluation's norm.
        seed: seeds random starts and noise of the probe's attacks.
        attacks: the evaluation's attack objects by name (reused instead of rebuilding).
        batch_size: examples per attack call.
    """

    def __init__(self, model: Model, x: torch.Tensor, y: torch.Tensor, bounds: tuple[float, float], norm: str,
                 seed: int = 0, attacks: Mapping[str, Any] | None = None, batch_size: int = 250):
        self.model = model
        self.x, self.y = x, y.to(x.device)
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.norm = norm
        self.device = x.device
        self.seed = seed
        self.attacks = dict(attacks or {})
        self.batch_size = batch_size
        self.clean_predictions = self.predict(self.x)
        self.clean_top1 = self.accuracy(self.clean_predictions)

    @property
    def n(self) -> int:
        """Number of examples in the probe."""
        return int(self.y.shape[0])

    def predict(self, x: torch.Tensor, model: Model | None = None) -> torch.Tensor:
        """Predictions of ``model`` (default: the model under evaluation) on ``x``."""
        model = self.model if model is None else model
        outs = []
        with torch.no_grad():
            for i in range(0, x.shape[0], self.batch_size):
                outs.append(model.predict(model(x[i:i + self.batch_size])))
        return torch.cat(outs) if outs else torch.zeros(0, dtype=torch.long, device=self.device)

    def accuracy(self, predictions: torch.Tensor) -> float:
        """Fraction of the probe's examples that ``predictions`` get right."""
        return float((predictions == self.y).float().mean()) if self.n else 0.0

    def entry(self, name: str) -> Any:
        """The registry entry of attack ``name``.

        Raises:
            AttackUnavailable: when no plugin registered it.
        """
        try:
            return plugins.registry().get("attacks", name)
        except UnknownNameError:
            raise AttackUnavailable(f"no plugin registers attack '{name}'") from None

    def build(self, name: str, overrides: Mapping[str, Any] | None = None,
              params: Mapping[str, Any] | None = None) -> Any:
        """An attack by registry name.

        Args:
            name: the registry name.
            overrides: hyper-parameters that replace the run's (from the attack's own
                ``probe_params``, so no parameter name is guessed).
            params: the full hyper-parameters of an evaluation run; when given and no
                overrides are, the evaluation's own attack object is reused if present.

        Raises:
            AttackUnavailable: when no plugin registered ``name`` or it refuses the params.
        """
        if overrides is None and name in self.attacks:
            return self.attacks[name]
        self.entry(name)
        kwargs = {**dict(params or {}), **dict(overrides or {})}
        try:
            return plugins.registry().build("attacks", name, **kwargs)
        except AdvframeError as exc:
            raise AttackUnavailable(f"attack '{name}' could not be built: {exc}") from None

    def schedule(self, name: str, steps: int, step_size: float) -> dict[str, Any] | None:
        """The attack's own parameters for ``steps`` deterministic steps of ``step_size``.

        None for an attack that declares no ``probe_params`` (it has no step schedule).
        """
        probe_params = self.entry(name).trait("probe_params")
        return probe_params(steps, step_size) if callable(probe_params) else None

    def attack(self, name: str, eps: float, *, overrides: Mapping[str, Any] | None = None,
               params: Mapping[str, Any] | None = None, norm: str | None = None,
               source: Any | None = None) -> ProbeRun:
        """Run an attack on the probe (untargeted) through the engine; measure the model under evaluation.

        Args:
            name: the attack's registry name.
            eps: the radius.
            overrides: hyper-parameters that replace the run's.
            params: an evaluation run's hyper-parameters to rebuild the attack with.
            norm: the norm (default: the evaluation's).
            source: craft the examples on this model instead (a transfer attack, with fixed
                steps where the attack has ``early_exit``); the model under evaluation is
                still the one measured.

        Raises:
            AttackUnavailable: when the attack is not registered, refuses the threat
                model, or its examples are refused by the engine.
        """
        if source is not None and EARLY_EXIT in getattr(self.entry(name).factory, "defaults", {}):
            overrides = {**dict(overrides or {}), EARLY_EXIT: False}  # the goal would be met on the source
        spec = AttackSpec(name, self.build(name, overrides, params))
        threat = ThreatModel(norm=norm or self.norm, eps=eps, bounds=self.bounds)
        try:
            spec.attack.check_threat(threat, None)
        except AdvframeError as exc:
            raise AttackUnavailable(str(exc)) from None
        crafter = self.model if source is None else source
        preds = []
        for i in range(0, self.n, self.batch_size):
            x, y = self.x[i:i + self.batch_size], self.y[i:i + self.batch_size]
            (record,) = Engine([threat], seed=self.seed).craft(crafter, x, y, spec, start=i)
            if not record.ok:
                raise AttackUnavailable(record.refusal.describe() if record.refusal else f"attack '{name}' failed")
            preds.append(self.predict(record.x_adv))
        p = torch.cat(preds)
        return ProbeRun(name, eps, self.accuracy(p), p)
