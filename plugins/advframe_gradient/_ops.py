"""Helpers of the gradient attacks only: Kurakin's iteration schedule in pixel units.

The tensor helpers they share with other plugins (per-example norms, step directions,
projections, seeded draws, random starts) are public in :mod:`advframe.ops`; parameter
checks are in :mod:`advframe.params`."""

from __future__ import annotations

import math

from advframe.threat import ThreatModel


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
