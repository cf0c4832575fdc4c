"""The Attack protocol and a small base class that attack plugins build on.

An attack is constructed with keyword hyper-parameters and called as
``attack(model, x, y, threat, target=None) -> x_adv``. The result has the shape of
``x`` and lies inside ``threat`` (the evaluator audits this and refuses batches that
do not). Attacks reach the model only through ``model(x)``, ``model.loss``,
``model.scores`` and ``model.predict``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch

from advframe.errors import ParameterError
from advframe.params import Configurable
from advframe.threat import ThreatModel


@runtime_checkable
class AttackProtocol(Protocol):
    """What the evaluator needs from an attack object."""

    name: str
    norms: tuple[str, ...]
    targetable: bool
    uses_true_label: bool
    gradient_evaluations: int
    params: dict[str, Any]

    def __call__(self, model: Any, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                 target: torch.Tensor | None = None) -> torch.Tensor: ...


class Attack(Configurable):
    """Base class for attacks.

    Class attributes a subclass sets:
        name: stable snake_case name (``fgsm``, ``iter_ll``, ...).
        summary: one line for ``advframe list``.
        norms: the norms it supports.
        targetable: whether it accepts targets.
        uses_true_label: whether it reads the true label ``y`` (label leaking, Kurakin §4.2).
        defaults / presets: hyper-parameters (see :class:`advframe.params.Configurable`).

    ``gradient_evaluations`` counts forward+backward passes over the batch since the
    last :meth:`reset_counter`; the evaluator reads and resets it.
    """

    summary: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    norms: ClassVar[tuple[str, ...]] = ("linf",)
    targetable: ClassVar[bool] = False
    uses_true_label: ClassVar[bool] = True
    #: True for attacks whose gradient at x does not depend on eps, so that
    #: :meth:`perturb_grid` can share one gradient over an eps grid.
    one_step: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.gradient_evaluations = 0

    def reset_counter(self) -> None:
        """Set the gradient-evaluation counter back to zero."""
        self.gradient_evaluations = 0

    # -- the call ----------------------------------------------------------------
    def __call__(self, model: Any, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                 target: torch.Tensor | None = None) -> torch.Tensor:
        """Return adversarial examples for ``x`` inside ``threat``.

        Args:
            model: a Model (see :mod:`advframe.model`), in eval mode.
            x: clean inputs inside ``threat.bounds``.
            y: true labels (class indices).
            threat: the threat model.
            target: target classes for a targeted attack (``threat.targeted``).
        """
        self.check_threat(threat, target)
        return self.perturb(model, x.detach(), y, threat, target)

    def perturb_grid(self, model: Any, x: torch.Tensor, y: torch.Tensor,
                     threats: Sequence[ThreatModel],
                     target: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Adversarial examples for each threat model of a grid (same norm, other eps).

        The default runs the attack once per threat; one-step attacks override it to
        share the gradient, which does not depend on eps.
        """
        return [self(model, x, y, t, target) for t in threats]

    def perturb(self, model: Any, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                target: torch.Tensor | None) -> torch.Tensor:
        """The attack itself; subclasses implement it."""
        raise NotImplementedError(f"attack {self.name} does not implement perturb()")

    def check_threat(self, threat: ThreatModel, target: torch.Tensor | None) -> None:
        """Refuse a threat model this attack cannot honour."""
        if threat.norm not in self.norms:
            raise ParameterError(f"attack '{self.name}' supports norm {', '.join(self.norms)}, "
                                 f"not {threat.norm}: choose --norm {self.norms[0]}")
        if threat.targeted and not self.targetable:
            raise ParameterError(f"attack '{self.name}' cannot be targeted: drop --targeted")
        if threat.targeted and target is None:
            raise ParameterError(f"targeted attack '{self.name}' needs target classes")

    # -- helpers -------------------------------------------------------------------
    def loss_gradient(self, model: Any, x: torch.Tensor, labels: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient of the summed ``model.loss`` w.r.t. ``x``, and the outputs at ``x``.

        One forward+backward pass; counted in ``gradient_evaluations``. Only the input
        gradient is computed (no parameter ``.grad`` is touched).
        """
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            outputs = model(x)
            loss = model.loss(outputs, labels).sum()
            (grad,) = torch.autograd.grad(loss, x)
        self.gradient_evaluations += 1
        return grad.detach(), outputs.detach()

    def objective_gradient(self, model: Any, x: torch.Tensor, y: torch.Tensor,
                           target: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient of the quantity an attack ascends: the loss of ``y`` (untargeted)
        or minus the loss of ``target`` (targeted); and the outputs at ``x``."""
        if target is None:
            return self.loss_gradient(model, x, y)
        grad, outputs = self.loss_gradient(model, x, target)
        return -grad, outputs


def least_likely(model: Any, x: torch.Tensor) -> torch.Tensor:
    """The least-likely class of each example by ``model.scores`` (Kurakin §2.2)."""
    with torch.no_grad():
        return model.scores(model(x)).argmin(dim=1)


def random_target(y: torch.Tensor, num_classes: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A uniformly random class different from ``y`` for each example."""
    offset = torch.randint(1, num_classes, y.shape, generator=generator, device="cpu").to(y.device)
    return (y + offset) % num_classes
