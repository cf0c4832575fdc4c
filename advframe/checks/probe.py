"""The probe: a small subset of the evaluation data on which checks run their own attacks.

Checks that cannot read what they need from the evaluation's runs craft adversarial
examples themselves, on the first ``subset`` examples (200 by default) so that they
cost seconds, not minutes. Attacks are built by registry name through
:func:`advframe.get_attack` (or taken from the evaluation's own attack objects); a
name that no plugin registered makes the check ``not_applicable``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from advframe import plugins
from advframe.errors import AdvframeError, UnknownNameError
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
        model: the model under evaluation (a Model, in eval mode, on ``device``).
        x: the subset's inputs.
        y: the subset's labels.
        bounds: valid input range.
        norm: the evaluation's norm.
        device: where the model lives.
        seed: seeds random starts and noise of the probe's attacks.
        attacks: the evaluation's attack objects by name (reused instead of rebuilding).
        batch_size: examples per attack call.
    """

    def __init__(self, model: Any, x: torch.Tensor, y: torch.Tensor, bounds: tuple[float, float], norm: str,
                 device: torch.device, seed: int = 0, attacks: Mapping[str, Any] | None = None,
                 batch_size: int = 250):
        self.model = model
        self.x = x.to(device)
        self.y = y.to(device)
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.norm = norm
        self.device = device
        self.seed = seed
        self.attacks = dict(attacks or {})
        self.batch_size = batch_size
        self.clean_predictions = self.predict(self.x)
        self.clean_top1 = self.accuracy(self.clean_predictions)

    @property
    def n(self) -> int:
        """Number of examples in the probe."""
        return int(self.y.shape[0])

    def predict(self, x: torch.Tensor, model: Any | None = None) -> torch.Tensor:
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

    def build(self, name: str, overrides: Mapping[str, Any] | None = None,
              params: Mapping[str, Any] | None = None) -> Any:
        """An attack by registry name.

        Args:
            name: the registry name.
            overrides: hyper-parameters to set when the attack declares them (others are
                ignored, so one override set serves attacks with different parameters).
            params: the full hyper-parameters of an evaluation run; when given and no
                overrides are, the evaluation's own attack object is reused if present.

        Raises:
            AttackUnavailable: when no plugin registered ``name`` or it refuses the params.
        """
        if overrides is None and name in self.attacks:
            return self.attacks[name]
        try:
            entry = plugins.registry().get("attacks", name)
        except UnknownNameError:
            raise AttackUnavailable(f"no plugin registers attack '{name}'") from None
        declared = dict(getattr(entry.factory, "defaults", {}))
        kwargs = dict(params or {})
        kwargs.update({k: v for k, v in (overrides or {}).items() if k in declared})
        try:
            return plugins.registry().build("attacks", name, **kwargs)
        except AdvframeError as exc:
            raise AttackUnavailable(f"attack '{name}' could not be built: {exc}") from None

    def attack(self, name: str, eps: float, *, overrides: Mapping[str, Any] | None = None,
               params: Mapping[str, Any] | None = None, norm: str | None = None,
               source: Any | None = None) -> ProbeRun:
        """Run an attack on the probe (untargeted) and measure the model under evaluation.

        Args:
            name: the attack's registry name.
            eps: the radius.
            overrides: hyper-parameters to set when the attack declares them.
            params: an evaluation run's hyper-parameters to rebuild the attack with.
            norm: the norm (default: the evaluation's).
            source: craft the examples on this model instead (a transfer attack); the
                model under evaluation is still the one measured.

        Raises:
            AttackUnavailable: when the attack is not registered, refuses the threat
                model, or returns examples outside it.
        """
        attack = self.build(name, overrides, params)
        threat = ThreatModel(norm=norm or self.norm, eps=eps, bounds=self.bounds)
        if hasattr(attack, "check_threat"):
            try:
                attack.check_threat(threat, None)
            except AdvframeError as exc:
                raise AttackUnavailable(str(exc)) from None
        crafter = self.model if source is None else source
        preds = []
        for i in range(0, self.n, self.batch_size):
            x, y = self.x[i:i + self.batch_size], self.y[i:i + self.batch_size]
            torch.manual_seed(self.seed * 1_000_003 + i)
            x_adv = attack(crafter, x, y, threat)
            report = threat.audit(x_adv, x)
            if not report.ok:
                raise AttackUnavailable(f"attack '{name}' at eps={eps:g} left the threat model on "
                                        f"{report.violations} example(s) (excess {report.max_excess:.3g})")
            preds.append(self.predict(x_adv.detach()))
        p = torch.cat(preds)
        return ProbeRun(name, eps, self.accuracy(p), p)
