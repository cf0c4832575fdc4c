"""Tensor helpers shared by the gradient attacks: per-example norms, step directions,
random starts, seeded generators, Kurakin's schedule and parameter checks."""

from __future__ import annotations

import math
from typing import Any

import torch

from advframe import params
from advframe.errors import ParameterError
from advframe.threat import ThreatModel, rows

#: Smallest norm divided by, so that a zero gradient gives a zero step instead of NaN.
TINY = 1e-12


def per_example(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a per-example vector to broadcast against a batch shaped like ``x``."""
    return values.view(-1, *([1] * (x.dim() - 1)))


def flat_norm(t: torch.Tensor, p: str) -> torch.Tensor:
    """Per-example ``l1``, ``l2`` or ``linf`` norm of a batch (also of an empty one)."""
    flat = rows(t)
    if p == "l1":
        return flat.abs().sum(dim=1)
    if p == "l2":
        return flat.norm(p=2, dim=1)
    if p == "linf":
        return flat.abs().amax(dim=1) if flat.shape[1] else flat.new_zeros(t.shape[0])
    raise ValueError(f"unknown norm {p!r}")


def normalized(g: torch.Tensor, p: str) -> torch.Tensor:
    """``g / ||g||_p`` per example (a zero gradient stays zero)."""
    return g / per_example(flat_norm(g, p).clamp_min(TINY), g)


def steepest(g: torch.Tensor, norm: str) -> torch.Tensor:
    """The steepest-ascent direction of unit ``norm``: ``sign(g)`` for linf, ``g/||g||_2`` for l2."""
    return g.sign() if norm == "linf" else normalized(g, "l2")


def generator(seed: int | None) -> torch.Generator | None:
    """A CPU generator seeded with ``seed``, or ``None`` (torch's global RNG) for ``seed=None``."""
    return None if seed is None else torch.Generator().manual_seed(int(seed))


def randn_like(x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like ``x`` (drawn on the CPU when seeded, for reproducibility)."""
    if gen is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)


def rand_like(x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """Uniform [0, 1) noise shaped like ``x``."""
    if gen is None:
        return torch.rand_like(x)
    return torch.rand(x.shape, generator=gen, dtype=x.dtype).to(x.device)


def random_start(x: torch.Tensor, threat: ThreatModel, gen: torch.Generator | None) -> torch.Tensor:
    """A point drawn uniformly from the ``threat`` ball around ``x``, then clipped into bounds.

    linf: each coordinate uniform in ``[-eps, eps]``. l2: uniform in the ball, i.e. a
    Gaussian direction scaled to radius ``eps * U^(1/d)`` with ``d`` the input dimension.
    """
    if threat.norm == "linf":
        delta = (rand_like(x, gen) * 2 - 1) * threat.eps
    else:
        d = x[0].numel() if x.shape[0] else 1
        direction = normalized(randn_like(x, gen), "l2")
        u = rand_like(x.new_empty(x.shape[0]), gen)
        delta = direction * per_example(threat.eps * u.pow(1.0 / d), x)
    return threat.project(x + delta, x)


def pixel(threat: ThreatModel) -> float:
    """One pixel step of an 8-bit image in the model's input scale: ``(hi - lo) / 255``."""
    lo, hi = threat.bounds
    return (hi - lo) / 255.0


def kurakin_steps(eps: float, bounds: tuple[float, float]) -> int:
    """Kurakin et al. (2017) §2.2 iteration count ``min(eps + 4, 1.25 eps)``, eps in pixels.

    eps is converted to pixel units of ``(hi - lo) / 255`` and the count is rounded DOWN
    (``floor``, as ``int(...)`` in the authors' code), with a 1e-6 slack against float
    error (0.3 · 255 = 76.49999...). A positive eps always gets at least one step; eps 0
    gets none. On [0, 1]: eps 0.05 → 15, 0.1 → 29, 0.2 → 55, 0.3 → 80.
    """
    if eps <= 0:
        return 0
    lo, hi = bounds
    e = eps * 255.0 / (hi - lo)
    return max(1, int(math.floor(min(e + 4.0, 1.25 * e) + 1e-6)))


def check_nonnegative(owner: str, **values: Any) -> None:
    """Raise :class:`ParameterError` for a parameter that must be ``None`` or a number >= 0."""
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ParameterError(f"{owner}: parameter {key}={value!r} must be a finite number >= 0")


def check_int(owner: str, key: str, value: Any, minimum: int) -> None:
    """Raise :class:`ParameterError` unless ``value`` is ``None`` or an int >= ``minimum``."""
    if value is not None:
        params.check_int(owner, key, value, minimum)
