"""The Attack protocol and a small base class that attack plugins build on.

An attack is constructed with keyword hyper-parameters and called as
``attack(model, x, y, threat, target=None) -> x_adv``. The result has the shape of
``x`` and lies inside ``threat`` (the evaluator audits this and refuses batches that
do not). Attacks reach the model only through ``model(x)``, ``model.loss``,
``model.scores`` and ``model.predict``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch

from advframe.errors import ParameterError
from advframe.model import Model
from advframe.params import Configurable
from advframe.threat import ThreatModel


#: An attack's objective: per-example values to ascend, computed from the model's outputs.
Objective = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Crafted:
    """The adversarial batch an attack made for one threat of an eps grid, and its cost.

    Attributes:
        x_adv: the adversarial examples (same shape, dtype and device as the inputs).
        gradient_evaluations: forward+backward passes per example of the batch booked to this
            threat (a pass over half the batch counts 0.5).
        forward_queries: forward-only passes per example of the batch booked to this threat.
        seconds: wall-clock seconds booked to this threat.
        shared: the cost was spent once for the whole grid and is booked here as an
            equal share (a one-step attack whose gradient does not depend on eps).
    """

    x_adv: torch.Tensor
    gradient_evaluations: float
    forward_queries: float
    seconds: float
    shared: bool = False


def shared_over(advs: Sequence[torch.Tensor], gradient_evaluations: float, forward_queries: float,
                seconds: float) -> list[Crafted]:
    """Book a cost spent once for a whole grid as equal shares, one :class:`Crafted` per threat."""
    n = max(len(advs), 1)
    shared = len(advs) > 1
    return [Crafted(a, gradient_evaluations / n, forward_queries / n, seconds / n, shared) for a in advs]


def synchronize(x: torch.Tensor) -> None:
    """Wait for queued device work on ``x``'s device, so that wall-clock times are honest."""
    if x.is_cuda:
        torch.cuda.synchronize(x.device)


@runtime_checkable
class AttackProtocol(Protocol):
    """What the engine needs from an attack object (:class:`Attack` provides all of it)."""

    name: str
    norms: tuple[str, ...]
    targetable: bool
    uses_true_label: bool
    params: dict[str, Any]

    def grid(self, model: Model, x: torch.Tensor, y: torch.Tensor, threats: Sequence[ThreatModel],
             target: torch.Tensor | None = None, seeds: Sequence[int] | None = None) -> list[Crafted]: ...

    def check_threat(self, threat: ThreatModel, target: torch.Tensor | None) -> None: ...


class Attack(Configurable):
    """Base class for attacks.

    A subclass implements :meth:`perturb` (one threat model) and sets class attributes:

    * ``name``: stable snake_case name (``fgsm``, ``iter_ll``, ...); ``summary``: one
      line for ``advframe list``; ``aliases``.
    * ``norms``, ``targetable``, ``uses_true_label`` (reads the true label ``y``).
    * ``defaults`` / ``presets``: hyper-parameters (see :class:`advframe.params.Configurable`).
    * traits the checks read, so that a third-party attack takes part in every check
      with no core change: ``one_step_counterpart`` (the one-step attack an iterative
      attack must beat at equal eps), ``label_free_twin`` (the same attack reading the
      model's prediction instead of the true label), ``leaks_labels`` (a one-step attack
      whose predicted-label twin the evaluator measures by default, Kurakin §4.2),
      ``noise_baseline`` (random noise, not a white-box attack), ``unbounded_probe``
      (a budget-free attack that must reach 0 % accuracy as eps grows) and
      ``black_box`` (uses no gradient).
    * ``eps_free_direction``: a one-step attack whose public ``direction(model, x, y,
      target)`` (one gradient) does not depend on eps, so that ``project(x + eps·d)`` is
      its example at any eps; mixed-batch adversarial training reads it to give each
      example its own eps from one gradient.

    The entry point is :meth:`grid` (after foolbox 3's ``FixedEpsilonAttack.__call__``):
    adversarial examples for every threat model of an eps grid, with their cost. By
    default it runs :meth:`perturb` once per threat; an attack whose work does not
    depend on eps overrides :meth:`craft_grid` to share it. ``attack(model, x, y,
    threat, target)`` is the one-threat call.

    ``gradient_evaluations`` and ``forward_queries`` count passes since the last
    :meth:`reset_counter`; :meth:`gradient` and :meth:`forward` keep them, and also the
    rows each pass had, so that an attack that works on fewer and fewer examples (one that
    stops on the examples it has broken) is booked per example: :meth:`booked` is the mean
    number of passes per example of the batch. A pass counted by hand (``+= 1``) is booked
    as a pass over the whole batch.
    """

    summary: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    norms: ClassVar[tuple[str, ...]] = ("linf",)
    targetable: ClassVar[bool] = False
    uses_true_label: ClassVar[bool] = True
    one_step_counterpart: ClassVar[str | None] = None
    label_free_twin: ClassVar[str | None] = None
    leaks_labels: ClassVar[bool] = False
    noise_baseline: ClassVar[bool] = False
    unbounded_probe: ClassVar[bool] = False
    black_box: ClassVar[bool] = False
    eps_free_direction: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.reset_counter()

    def reset_counter(self) -> None:
        """Set the gradient-evaluation and forward-query counters back to zero."""
        self.gradient_evaluations = 0
        self.forward_queries = 0
        self._rows = {"gradient": [0, 0], "forward": [0, 0]}  # kind -> [passes counted with rows, rows]

    def count_passes(self, kind: str, rows: int) -> None:
        """Count one pass (``kind`` ``"gradient"`` or ``"forward"``) over ``rows`` examples."""
        if kind == "gradient":
            self.gradient_evaluations += 1
        else:
            self.forward_queries += 1
        booked = self._rows[kind]
        booked[0] += 1
        booked[1] += int(rows)

    def booked(self, n: int) -> tuple[float, float]:
        """Gradient and forward passes per example of a batch of ``n``, since :meth:`reset_counter`.

        A pass counted through :meth:`count_passes` costs its rows over ``n``; a pass counted
        by hand costs 1 (the whole batch).
        """
        n = max(int(n), 1)
        (grad_passes, grad_rows), (fwd_passes, fwd_rows) = self._rows["gradient"], self._rows["forward"]
        return (grad_rows / n + self.gradient_evaluations - grad_passes,
                fwd_rows / n + self.forward_queries - fwd_passes)

    # -- the entry points -----------------------------------------------------------
    def __call__(self, model: Model, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                 target: torch.Tensor | None = None) -> torch.Tensor:
        """Return adversarial examples for ``x`` inside ``threat``.

        Args:
            model: a Model (see :mod:`advframe.model`), in eval mode.
            x: clean inputs inside ``threat.bounds``.
            y: true labels (class indices).
            threat: the threat model.
            target: target classes for a targeted attack (``threat.targeted``).
        """
        return self.grid(model, x, y, [threat], target)[0].x_adv

    def grid(self, model: Model, x: torch.Tensor, y: torch.Tensor, threats: Sequence[ThreatModel],
             target: torch.Tensor | None = None, seeds: Sequence[int] | None = None) -> list[Crafted]:
        """Adversarial examples for each threat model of a grid, with their cost.

        Args:
            model: a Model, in eval mode.
            x: clean inputs inside the threats' bounds (never written into).
            y: true labels.
            threats: threat models of one norm (usually one per eps).
            target: target classes for targeted threats.
            seeds: one seed per threat for torch's global RNG (random starts, noise),
                set before that threat's work; ``None`` leaves the RNG alone.

        Returns:
            One :class:`Crafted` per threat, in order.
        """
        for threat in threats:
            self.check_threat(threat, target)
        if seeds is not None and len(seeds) != len(threats):
            raise ParameterError(f"attack '{self.name}': {len(seeds)} seeds for {len(threats)} threat models")
        reachable = [threat.within_reach(x) for threat in threats]  # eps beyond the box: the box
        return self.craft_grid(model, x.detach(), y, reachable, target, seeds)

    def craft_grid(self, model: Model, x: torch.Tensor, y: torch.Tensor, threats: list[ThreatModel],
                   target: torch.Tensor | None, seeds: Sequence[int] | None) -> list[Crafted]:
        """Run :meth:`perturb` once per threat and book each run's own cost."""
        out = []
        for j, threat in enumerate(threats):
            if seeds is not None:
                torch.manual_seed(seeds[j])
            self.reset_counter()
            t0 = time.perf_counter()
            x_adv = self.perturb(model, x, y, threat, target)
            synchronize(x)
            out.append(Crafted(x_adv, *self.booked(x.shape[0]), time.perf_counter() - t0))
        return out

    def perturb(self, model: Model, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                target: torch.Tensor | None) -> torch.Tensor:
        """The attack itself for one threat model; subclasses implement it."""
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

    # -- counted passes --------------------------------------------------------------
    def gradient(self, model: Model, x: torch.Tensor, objective: Objective) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient w.r.t. ``x`` of ``objective(model(x)).sum()``, and the outputs at ``x``.

        The one gradient helper of all attacks: ONE forward+backward pass, counted in
        ``gradient_evaluations``. Only the input gradient is computed (no parameter
        ``.grad`` is touched). Labels read off the outputs themselves (the predicted or
        least-likely class) cost no extra forward.
        """
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            outputs = model(x)
            (grad,) = torch.autograd.grad(objective(outputs).sum(), x)
        self.count_passes("gradient", x.shape[0])
        return grad.detach(), outputs.detach()

    def forward(self, model: Model, x: torch.Tensor) -> torch.Tensor:
        """The model's outputs at ``x`` without gradient: ONE forward query, counted."""
        with torch.no_grad():
            outputs = model(x)
        self.count_passes("forward", x.shape[0])
        return outputs

    def objective_gradient(self, model: Model, x: torch.Tensor, y: torch.Tensor,
                           target: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient of the quantity an attack ascends: the loss of ``y`` (untargeted)
        or minus the loss of ``target`` (targeted); and the outputs at ``x``."""
        if target is None:
            return self.gradient(model, x, lambda out: model.loss(out, y))
        return self.gradient(model, x, lambda out: -model.loss(out, target))


#: The parameter of attacks that can stop on each example once its goal is met (the
#: iterative gradient attacks): on by default, for evaluation.
EARLY_EXIT = "early_exit"


def fixed_steps(factory: Any, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with ``early_exit=False`` when the attack ``factory`` declares that parameter
    and ``params`` leave it unset.

    Adversarial training trains on the adversary's last iterate of every example, and a
    transfer attack's goal is met on the source model, not on the targets measured: both
    run the fixed-step algorithm unless the user asks otherwise.
    """
    chosen = dict(params)
    if EARLY_EXIT in getattr(factory, "defaults", {}):
        chosen.setdefault(EARLY_EXIT, False)
    return chosen


def least_likely(model: Model, x: torch.Tensor) -> torch.Tensor:
    """The least-likely class of each example by ``model.scores`` (Kurakin §2.2)."""
    with torch.no_grad():
        return model.scores(model(x)).argmin(dim=1)


def random_target(y: torch.Tensor, num_classes: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A uniformly random class different from ``y`` for each example."""
    offset = torch.randint(1, num_classes, y.shape, generator=generator, device="cpu").to(y.device)
    return (y + offset) % num_classes
