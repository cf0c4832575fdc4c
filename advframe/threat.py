"""The threat model: which perturbations an attack is allowed to make.

A :class:`ThreatModel` is a frozen value passed to every attack call; it is never a
mode set on an attack object. ``project`` maps any candidate into the allowed set and
``audit`` measures how far a candidate strays outside it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from typing import Any, Literal

import torch

from advframe.errors import ThreatModelError
from advframe.ops import flat_norm, project, rows

Norm = Literal["linf", "l2"]
NORMS: tuple[str, ...] = ("linf", "l2")


def parse_eps(text: str | float) -> float:
    """Read an eps given as a number or a fraction such as ``"8/255"``.

    Raises:
        ThreatModelError: if the text is not a finite, non-negative number.
    """
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        s = str(text).strip()
        try:
            value = float(Fraction(s)) if "/" in s else float(s)
        except (ValueError, ZeroDivisionError):
            raise ThreatModelError(f"eps '{text}' is not a number: give e.g. 0.3 or 8/255") from None
    if not math.isfinite(value) or value < 0:
        raise ThreatModelError(f"eps {text} is invalid: eps must be a finite number >= 0")
    return value


@dataclass(frozen=True)
class AuditReport:
    """The result of :meth:`ThreatModel.audit` for one batch.

    Attributes:
        perturbation: per-example norm of ``x_adv - x`` in the threat model's norm.
        violations: number of examples outside the ball or the bounds (beyond tolerance).
        max_excess: the largest amount by which any example leaves the ball or bounds.
        nonfinite: number of examples with NaN or infinite values.
    """

    perturbation: torch.Tensor
    violations: int
    max_excess: float
    nonfinite: int

    @property
    def ok(self) -> bool:
        """True when every example lies inside the threat model."""
        return self.violations == 0

    @property
    def max_perturbation(self) -> float:
        """Largest per-example perturbation norm of the batch."""
        p = self.perturbation
        return float(p.max()) if p.numel() else 0.0


@dataclass(frozen=True)
class ThreatModel:
    """An Lp-ball threat model inside a box of valid inputs.

    Args:
        norm: ``"linf"`` or ``"l2"``.
        eps: radius of the ball, in the model's input scale (finite, >= 0).
        bounds: ``(lo, hi)`` box of valid inputs, lo < hi.
        targeted: whether attacks aim at a given target class instead of any wrong one.
        tolerance: slack that ``audit`` allows for float rounding, relative to the
            input scale ``max(1, |lo|, |hi|)`` (float32 cannot resolve 1e-5 near 255).

    Raises:
        ThreatModelError: on an unknown norm, a negative or non-finite eps, or bad bounds.
    """

    norm: str = "linf"
    eps: float = 0.3
    bounds: tuple[float, float] = (0.0, 1.0)
    targeted: bool = False
    tolerance: float = field(default=1e-5, compare=False)

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ThreatModelError(f"unknown norm '{self.norm}': use one of {', '.join(NORMS)}")
        try:
            if isinstance(self.eps, bool):
                raise TypeError
            eps = float(self.eps)
        except (TypeError, ValueError):
            raise ThreatModelError(f"eps {self.eps!r} is not a number") from None
        if not math.isfinite(eps) or eps < 0:
            raise ThreatModelError(f"eps {self.eps} is invalid: eps must be a finite number >= 0")
        try:
            lo, hi = (float(b) for b in self.bounds)
        except (TypeError, ValueError):
            raise ThreatModelError(f"bounds {self.bounds!r} must be two numbers (lo, hi)") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ThreatModelError(f"bounds ({lo}, {hi}) are invalid: need finite lo < hi")
        tol = self.tolerance
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (math.isfinite(tol) and tol >= 0):
            raise ThreatModelError(f"tolerance {tol!r} is invalid: use a finite number >= 0 (default 1e-5)")
        object.__setattr__(self, "eps", eps)
        object.__setattr__(self, "bounds", (lo, hi))
        object.__setattr__(self, "targeted", bool(self.targeted))

    # -- values -----------------------------------------------------------------
    def with_eps(self, eps: float) -> "ThreatModel":
        """A copy with another radius."""
        return replace(self, eps=eps)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict; ``from_dict`` inverts it."""
        d = asdict(self)
        d["bounds"] = list(self.bounds)
        d.pop("tolerance")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ThreatModel":
        """Rebuild a threat model written by :meth:`to_dict`."""
        return cls(norm=d["norm"], eps=d["eps"], bounds=tuple(d["bounds"]), targeted=d.get("targeted", False))

    # -- geometry ---------------------------------------------------------------
    def clip_bounds(self, x: torch.Tensor) -> torch.Tensor:
        """Clamp into the box of valid inputs."""
        return x.clamp(self.bounds[0], self.bounds[1])

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Map ``x_adv`` to the nearest point of the ball around ``x`` (per example), then into bounds.

        For linf this is the exact Euclidean projection onto ball ∩ box; for l2 the ball
        projection is followed by the box clamp, which never increases the distance to x
        when x itself lies inside the box. This is :func:`advframe.ops.project` with this
        threat model's ``eps``, ``norm`` and ``bounds`` (which also guards against an
        infinite step).
        """
        return project(x_adv, x, self.eps, self.norm, self.bounds)

    def reach(self, x: torch.Tensor) -> float:
        """``eps`` capped at the longest step inside the box: its span ``hi - lo`` (linf) or its
        diameter ``span · sqrt(d)`` (l2, ``d`` values per example of ``x``).

        One-step attacks step ``x + reach · d`` with ``|d| <= 1``: the same projected point as
        ``x + eps · d`` whenever ``eps`` is below the cap, and finite in float32 above it
        (``1e300 · d`` overflows to inf, and ``inf · 0`` is NaN).
        """
        span = self.bounds[1] - self.bounds[0]
        if self.norm == "linf":
            return min(self.eps, span)
        return min(self.eps, span * math.sqrt(max(1, x[0].numel() if x.shape[0] else 1)))

    def within_reach(self, x: torch.Tensor) -> "ThreatModel":
        """This threat model with ``eps`` capped at :meth:`reach`: the same set of allowed
        inputs (ball ∩ box), so that attacks which scale steps or schedules by eps stay finite
        (eps 1e300 overflows float32). Audits keep the eps that was asked for."""
        reach = self.reach(x)
        return self.with_eps(reach) if self.eps > reach else self

    def perturbation(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-example norm of ``x_adv - x``."""
        return flat_norm((x_adv - x).detach(), self.norm)

    def audit(self, x_adv: torch.Tensor, x: torch.Tensor) -> AuditReport:
        """Measure how ``x_adv`` relates to the allowed set around ``x``.

        Returns:
            An :class:`AuditReport`; ``violations`` counts examples that leave the ball
            or the bounds by more than ``tolerance``, or hold non-finite values.
        """
        x_adv, x = x_adv.detach(), x.detach()
        if x_adv.shape != x.shape:
            raise ThreatModelError(f"adversarial batch has shape {tuple(x_adv.shape)}, expected {tuple(x.shape)}")
        n = x.shape[0]
        finite = torch.isfinite(rows(x_adv)).all(dim=1)
        safe = torch.where(torch.isfinite(x_adv), x_adv, x)
        pert = self.perturbation(safe, x)
        ball_excess = (pert - self.eps).clamp_min(0)
        lo, hi = self.bounds
        flat = rows(safe)
        box_excess = torch.maximum((lo - flat).clamp_min(0), (flat - hi).clamp_min(0))
        box_excess = box_excess.amax(dim=1) if flat.shape[1] else flat.new_zeros(n)
        excess = torch.maximum(ball_excess, box_excess)
        tol = self.tolerance * max(1.0, abs(lo), abs(hi))
        bad = (excess > tol) | ~finite
        max_excess = float(excess.max()) if n else 0.0
        if not bool(finite.all()):
            max_excess = math.inf
        return AuditReport(perturbation=pert, violations=int(bad.sum()), max_excess=max_excess,
                           nonfinite=int((~finite).sum()))
