"""The sampling-noise bound every comparison of two accuracies in the checks uses.

Two accuracies measured on ``n1`` and ``n2`` examples are compared with a one-sided
two-proportion z-test with pooled variance at the 99 % level::

    p = (k1 + k2) / (n1 + n2)
    se = sqrt(p (1 - p) (1 / n1 + 1 / n2))
    z = (p1 - p2) / se,   "p1 exceeds p2 beyond sampling noise"  iff  z > 2.326

When both accuracies come from the same examples (paired) the test is conservative:
the pairing removes variance that the pooled standard error still counts, so the
checks warn only on a rise that would be significant even for independent samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: One-sided 99 % quantile of the standard normal distribution.
Z99: float = 2.3263478740408408

#: How the bound is named in evidence sentences.
BOUND_TEXT: str = "one-sided two-proportion z-test at 99 %, z > 2.33"


@dataclass(frozen=True)
class Excess:
    """The outcome of testing whether accuracy ``p1`` exceeds accuracy ``p2``.

    Attributes:
        p1: the accuracy expected to be the smaller one.
        n1: examples behind ``p1``.
        p2: the accuracy expected to be the larger one.
        n2: examples behind ``p2``.
        z: the z statistic of ``p1 - p2`` (``0`` when the standard error is zero and
            the accuracies are equal, ``inf`` when it is zero and ``p1 > p2``).
    """

    p1: float
    n1: int
    p2: float
    n2: int
    z: float

    @property
    def significant(self) -> bool:
        """True when ``p1`` exceeds ``p2`` beyond sampling noise (z > 2.326)."""
        return self.z > Z99

    def describe(self) -> str:
        """``"z = 1.23"`` (or ``"z = inf"``)."""
        return "z = inf" if math.isinf(self.z) else f"z = {self.z:.2f}"


def excess(p1: float, n1: int, p2: float, n2: int) -> Excess:
    """Test whether accuracy ``p1`` (on ``n1`` examples) exceeds ``p2`` (on ``n2``).

    Args:
        p1: first accuracy, a fraction in [0, 1].
        n1: its number of examples (> 0).
        p2: second accuracy, a fraction in [0, 1].
        n2: its number of examples (> 0).

    Returns:
        An :class:`Excess` holding the z statistic of the one-sided pooled test.

    Raises:
        ValueError: for a non-positive number of examples or an accuracy outside [0, 1].
    """
    if n1 <= 0 or n2 <= 0:
        raise ValueError(f"a proportion needs at least one example (got n1={n1}, n2={n2})")
    if not (0.0 <= p1 <= 1.0 and 0.0 <= p2 <= 1.0):
        raise ValueError(f"accuracies must lie in [0, 1] (got {p1}, {p2})")
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    se = math.sqrt(max(pooled * (1.0 - pooled), 0.0) * (1.0 / n1 + 1.0 / n2))
    if se == 0.0:
        z = 0.0 if p1 <= p2 else math.inf
    else:
        z = (p1 - p2) / se
    return Excess(p1, n1, p2, n2, z)


def pct(p: float) -> str:
    """A fraction as a percentage with one decimal, for evidence sentences."""
    return f"{100.0 * p:.1f} %"
