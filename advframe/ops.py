"""Tensor helpers for attack and defense plugins: per-example norms and projections, step
directions, seeded random draws, and the one seed derivation, :func:`derive_seed`.

Every function works on a batch (first dimension: one example per row), also on an
empty one, and returns a new tensor; none prints or keeps state. Plugins import these
instead of writing their own, so that one formula computes each quantity everywhere:
:meth:`advframe.threat.ThreatModel.project` is :func:`project` with the threat's radius.

Example:
    A plugin's iterative step in the l2 ball::

        from advframe import ops

        x_adv = ops.project(x_adv + step * ops.steepest(grad, "l2"), x, eps, "l2", bounds)
"""

from __future__ import annotations

import math
import zlib
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from advframe.threat import ThreatModel

#: Smallest norm divided by, so that a zero gradient gives a zero step instead of NaN.
TINY = 1e-12


def rows(t: torch.Tensor) -> torch.Tensor:
    """A batch as one row per example.

    Unlike ``t.reshape(n, -1)``, this also works for an empty batch.

    Args:
        t: a batch of any shape ``(n, ...)``.

    Returns:
        The same values shaped ``(n, d)``, with ``d`` the number of values per example.
    """
    return t.reshape(t.shape[0], math.prod(t.shape[1:]))


def per_example(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a per-example vector to broadcast against a batch shaped like ``x``.

    Args:
        values: one value per example, shape ``(n,)``.
        x: a batch shaped ``(n, ...)``.

    Returns:
        ``values`` viewed as ``(n, 1, ..., 1)`` with as many dimensions as ``x``.
    """
    return values.view(-1, *([1] * (x.dim() - 1)))


def flat_norm(t: torch.Tensor, p: str) -> torch.Tensor:
    """The per-example norm of a batch.

    Args:
        t: a batch shaped ``(n, ...)`` (may be empty).
        p: ``"l1"``, ``"l2"`` or ``"linf"``.

    Returns:
        The norm of each example, shape ``(n,)``; 0 for examples with no values.

    Raises:
        ValueError: for any other norm name.
    """
    flat = rows(t)
    if p == "l1":
        return flat.abs().sum(dim=1)
    if p == "l2":
        return flat.norm(p=2, dim=1)
    if p == "linf":
        return flat.abs().amax(dim=1) if flat.shape[1] else flat.new_zeros(t.shape[0])
    raise ValueError(f"unknown norm {p!r}")


def normalized(g: torch.Tensor, p: str) -> torch.Tensor:
    """Each example of ``g`` divided by its ``p``-norm.

    Args:
        g: a batch, typically a gradient.
        p: ``"l1"``, ``"l2"`` or ``"linf"``.

    Returns:
        ``g / ||g||_p`` per example; an all-zero example stays zero (the norm is
        clamped at :data:`TINY`).
    """
    return g / per_example(flat_norm(g, p).clamp_min(TINY), g)


def steepest(g: torch.Tensor, norm: str) -> torch.Tensor:
    """The steepest-ascent direction of unit size in ``norm``.

    Args:
        g: a batch of gradients.
        norm: ``"linf"`` (gives ``sign(g)``) or ``"l2"`` (gives ``g / ||g||_2``).

    Returns:
        The direction, shaped like ``g``.
    """
    return g.sign() if norm == "linf" else normalized(g, "l2")


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str,
            bounds: tuple[float, float]) -> torch.Tensor:
    """Map ``x_adv`` to the nearest point of the ``norm`` ball around ``x``, then into ``bounds``.

    For linf this is the exact Euclidean projection onto ball ∩ box; for l2 the ball
    projection is followed by the box clamp, which never increases the distance to ``x``
    when ``x`` lies inside the box. An infinite step becomes one of the box's span (which
    projects to the same bound) and a linf radius beyond the span is capped at it, so that
    a huge ``eps`` (1e300 overflows float32) never makes ``inf / inf = NaN``.

    Args:
        x_adv: candidate points, shaped like ``x``.
        x: the centres of the balls (clean inputs inside ``bounds``).
        eps: the radius of the ball (>= 0).
        norm: ``"linf"`` or ``"l2"``.
        bounds: the box ``(lo, hi)`` of valid inputs.

    Returns:
        The projected batch, shaped like ``x``.
    """
    lo, hi = bounds
    span = hi - lo
    delta = x_adv - x
    delta = torch.where(torch.isinf(delta), delta.sign() * span, delta)
    if norm == "linf":
        e = min(eps, span)  # exact: a larger clamp only admits points the box clip removes
        delta = delta.clamp(-e, e)
    else:
        n = flat_norm(delta, "l2").clamp_min(TINY)
        delta = delta * per_example((eps / n).clamp(max=1.0), delta)
    return (x + delta).clamp(lo, hi)


# --- seeds ------------------------------------------------------------------------------
#
# Every random stream in advframe is seeded by a position, never by call order: an eval
# batch's attack by (seed, start, attack index, eps index), a training epoch's order by
# (seed, epoch), a training step's random start by (seed, step, rank). So a result does not
# depend on how work is spread over processes, and a resumed run repeats the draws of the
# run it continues. All of them go through derive_seed (a test checks that no other
# formula exists).

#: The multiplier of the fold (a prime above any position in one run's stream).
MULTIPLIER = 1_000_003
#: Seeds are reduced below 2**63, which ``torch.manual_seed`` and ``Generator.manual_seed`` accept.
MODULUS = 2 ** 63


def derive_seed(seed: int, *parts: int | str, below: int = MODULUS) -> int:
    """The seed of the stream at position ``parts`` of a run seeded with ``seed``.

    The fold ``h ← (h · 1,000,003 + part) mod 2**63``, starting from ``seed``. One part
    gives ``seed · 1,000,003 + part``. A string part (a stream's name, such as
    ``"augment"``) enters as its CRC-32, which, unlike ``hash``, is the same in every
    process. ``below`` reduces the result further, for a seed handed on as an attack's
    ``seed`` parameter (which takes ``[0, 2**32)``).

    Args:
        seed: the run's seed (a non-negative integer).
        *parts: the position: integers (step, epoch, batch start, rank, ...) or names.
        below: the result is reduced modulo ``below`` (at most ``2**63``).

    Returns:
        An integer in ``[0, below)``, for ``torch.manual_seed`` or a ``seed`` parameter.

    Example:
        >>> derive_seed(0, 5)
        5
        >>> derive_seed(1, 2)
        1000005
    """
    h = int(seed) % MODULUS
    for part in parts:
        value = zlib.crc32(part.encode()) if isinstance(part, str) else int(part)
        h = (h * MULTIPLIER + value) % MODULUS
    return h % below


def generator(seed: int | None) -> torch.Generator | None:
    """A CPU random generator for reproducible draws.

    Args:
        seed: the seed, or ``None`` for torch's global generator.

    Returns:
        A ``torch.Generator`` seeded with ``seed``, or ``None`` when ``seed`` is ``None``.
    """
    return None if seed is None else torch.Generator().manual_seed(int(seed))


def randn_like(x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like ``x``.

    Args:
        x: the tensor whose shape, dtype and device the noise takes.
        gen: a CPU generator from :func:`generator` (the noise is drawn on the CPU, then
            moved, so that a seed gives the same values on every device), or ``None`` for
            torch's global generator on ``x``'s device.

    Returns:
        The noise, on ``x``'s device.
    """
    if gen is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)


def rand_like(x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """Uniform noise in ``[0, 1)`` shaped like ``x``.

    Args:
        x: the tensor whose shape, dtype and device the noise takes.
        gen: a CPU generator from :func:`generator`, or ``None`` (as in :func:`randn_like`).

    Returns:
        The noise, on ``x``'s device.
    """
    if gen is None:
        return torch.rand_like(x)
    return torch.rand(x.shape, generator=gen, dtype=x.dtype).to(x.device)


def random_start(x: torch.Tensor, threat: ThreatModel, gen: torch.Generator | None) -> torch.Tensor:
    """A point drawn uniformly from the ``threat`` ball around each example, then clipped into bounds.

    linf: each coordinate uniform in ``[-eps, eps]``. l2: uniform in the ball, i.e. a
    Gaussian direction scaled to radius ``eps · U^(1/d)`` with ``d`` the input dimension.

    Args:
        x: clean inputs.
        threat: the threat model whose ball and bounds the start lies in.
        gen: a CPU generator from :func:`generator`, or ``None`` for torch's global one.

    Returns:
        The starting points, shaped like ``x``.
    """
    if threat.norm == "linf":
        delta = (rand_like(x, gen) * 2 - 1) * threat.eps
    else:
        d = x[0].numel() if x.shape[0] else 1
        direction = normalized(randn_like(x, gen), "l2")
        u = rand_like(x.new_empty(x.shape[0]), gen)
        delta = direction * per_example(threat.eps * u.pow(1.0 / d), x)
    return threat.project(x + delta, x)
