"""Geometry of Square Attack (Andriushchenko et al., ECCV 2020): the schedule of square
sizes, per-example square windows and the l2 attack's centred "eta" patterns."""

from __future__ import annotations

import math

import torch

#: Iterations (on the 10,000-query scale) after which p is halved once more (paper §4, App. A).
HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_schedule(i: int, queries: int, p_init: float) -> float:
    """The fraction ``p`` of pixels a square covers at iteration ``i`` (0-based).

    ``p_init`` is halved after each iteration of :data:`HALVINGS`, which are given for a
    budget of 10,000 queries and rescaled to ``queries`` (the reference's
    ``int(i / queries * 10000)``).
    """
    it = int(i / queries * 10000)
    return p_init / 2 ** sum(it > h for h in HALVINGS)


def side(p: float, features: int, channels: int, smallest: int, largest: int, odd: bool = False) -> int:
    """Side of the square: ``round(sqrt(p · features / channels))``, at least ``smallest``
    (1 for linf, 3 for l2), odd when asked (l2), never larger than the image."""
    s = max(int(round(math.sqrt(p * features / channels))), smallest)
    if odd and s % 2 == 0:
        s += 1
    return max(min(s, largest), 1)


def positions(n: int, high: int, gen: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``n`` uniform integers in ``[0, high]`` (top-left corners of a square)."""
    return torch.randint(0, high + 1, (n,), generator=gen).to(device)


def signs(shape: tuple[int, ...], gen: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """Uniform random ±1 of ``shape``."""
    return (torch.randint(0, 2, shape, generator=gen) * 2 - 1).to(dtype=like.dtype, device=like.device)


def window_index(top: torch.Tensor, left: torch.Tensor, s: int, channels: int) -> tuple[torch.Tensor, ...]:
    """Advanced index of one ``s × s`` square per example into an ``(n, c, h, w)`` batch;
    indexing with it gives ``(n, c, s, s)``."""
    n, dev = top.shape[0], top.device
    r = torch.arange(s, device=dev)
    return (torch.arange(n, device=dev).view(n, 1, 1, 1), torch.arange(channels, device=dev).view(1, -1, 1, 1),
            (top.view(n, 1) + r).view(n, 1, s, 1), (left.view(n, 1) + r).view(n, 1, 1, s))


def _rectangles(a: int, b: int) -> torch.Tensor:
    """Nested centred rectangles of an ``a × b`` block, ring ``k`` weighted ``1 / (k + 1)^2``,
    unit l2 norm."""
    delta = torch.zeros(a, b)
    if a == 0 or b == 0:
        return delta
    r0, c0 = a // 2, b // 2
    for k in range(max(a // 2 + 1, b // 2 + 1)):
        delta[max(r0 - k, 0):min(r0 - k + 2 * k + 1, a), max(c0 - k, 0):min(c0 - k + 2 * k + 1, b)] += 1.0 / (k + 1) ** 2
    return delta / delta.pow(2).sum().sqrt()


def eta(s: int) -> torch.Tensor:
    """The l2 attack's ``s × s`` pattern: two centred-rectangle halves of opposite sign,
    unit l2 norm (Andriushchenko et al., §3.2, Fig. 2)."""
    delta = torch.cat([_rectangles(s // 2, s), -_rectangles(s - s // 2, s)], dim=0)
    return delta / delta.pow(2).sum().sqrt().clamp_min(1e-12)


def etas(n: int, s: int, gen: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """``(n, 1, s, s)`` eta patterns, each transposed with probability 1/2."""
    base = eta(s).to(dtype=like.dtype, device=like.device)
    flip = (torch.rand(n, generator=gen) < 0.5).to(like.device).view(n, 1, 1, 1)
    return torch.where(flip, base.t(), base)


def stripes_l2(shape: tuple[int, int, int, int], gen: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """The l2 initialisation: a grid of eta patterns of side ``h // 5`` with random signs per
    example and channel (unnormalised)."""
    n, c, h, w = shape
    s = max(h // 5, 1)
    start = (h - s * 5) // 2 if h >= 5 else 0
    delta = like.new_zeros(shape)
    pattern = eta(s).to(dtype=like.dtype, device=like.device)
    top = start
    for _ in range(h // s):
        left = start
        for _ in range(w // s):
            if top + s <= h and left + s <= w:
                delta[:, :, top:top + s, left:left + s] += pattern * signs((n, c, 1, 1), gen, like)
            left += s
        top += s
    return delta
