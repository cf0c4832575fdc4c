"""Minimal-norm projection onto a hyperplane inside a box, the step of FAB
(Croce & Hein, ICML 2020, *Minimally distorted adversarial examples with a fast adaptive
boundary attack*, §3.1, eq. (4)), for the linf and l2 norms.

For each row: the smallest ``d`` (in the chosen norm) with ``w · (p + d) = b`` and
``lo <= p + d <= hi``. After orienting ``w`` so that the required change ``c = b - w·p``
is non-negative, the optimal ``d`` moves each coordinate along ``sign(w_i)`` up to the
room ``r_i`` the box leaves it:

* linf: ``d_i = sign(w_i) · min(λ, r_i)``,
* l2:   ``d_i = w_i · min(λ, r_i / |w_i|)``,

with the scalar ``λ >= 0`` solving ``Σ a_i min(λ, β_i) = c`` (``a = |w|, β = r`` for linf;
``a = w², β = r / |w|`` for l2). The left side is piecewise linear and non-decreasing in
``λ``; it is solved exactly by sorting the breakpoints ``β`` (O(d log d) per row). When
even the whole box cannot reach the hyperplane, every coordinate goes to its bound.
"""

from __future__ import annotations

import torch


def solve_saturating(a: torch.Tensor, beta: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Per row, the smallest ``λ >= 0`` with ``Σ_i a_i min(λ, β_i) = c`` (``a, β >= 0``, ``c >= 0``);
    ``max β`` when no ``λ`` reaches ``c``."""
    beta_s, order = beta.sort(dim=1)
    a_s = a.gather(1, order)
    zero = a.new_zeros(a.shape[0], 1)
    cum_a = torch.cat([zero, a_s.cumsum(dim=1)], dim=1)  # Σ a over the j smallest breakpoints
    cum_ab = torch.cat([zero, (a_s * beta_s).cumsum(dim=1)], dim=1)
    total = cum_a[:, -1:]
    reached = cum_ab[:, 1:] + beta_s * (total - cum_a[:, 1:])  # value at λ = β_(j)
    j = (reached < c.unsqueeze(1)).sum(dim=1, keepdim=True)  # breakpoints passed before reaching c
    feasible = j < a.shape[1]
    j = j.clamp(max=a.shape[1] - 1)
    lam = (c.unsqueeze(1) - cum_ab.gather(1, j)) / (total - cum_a.gather(1, j)).clamp_min(1e-30)
    return torch.where(feasible, lam, beta_s[:, -1:]).squeeze(1).clamp_min(0)


def project_hyperplane(p: torch.Tensor, w: torch.Tensor, b: torch.Tensor, lo: float, hi: float,
                       norm: str) -> torch.Tensor:
    """The minimal-norm step ``d`` taking each row of ``p`` onto ``{z : w·z = b}`` inside ``[lo, hi]``.

    Args:
        p: points, ``(m, d)``, inside the box.
        w: normals, ``(m, d)``.
        b: offsets, ``(m,)``.
        lo, hi: the box.
        norm: ``"linf"`` or ``"l2"``.

    Returns:
        ``d`` of shape ``(m, d)``.
    """
    c = b - (w * p).sum(dim=1)
    w = torch.where(c.unsqueeze(1) < 0, -w, w)
    c = c.abs()
    room = torch.where(w > 0, hi - p, p - lo).clamp_min(0)
    mag = w.abs()
    if norm == "linf":
        lam = solve_saturating(mag, room, c)
        return w.sign() * torch.minimum(lam.unsqueeze(1), room)
    moving = mag > 0
    beta = torch.where(moving, room / mag.clamp_min(1e-30), torch.zeros_like(room))
    lam = solve_saturating(mag * mag, beta, c)
    return w * torch.minimum(lam.unsqueeze(1), beta)
