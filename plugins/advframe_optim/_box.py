"""Helpers shared by the optimisation attacks: the tanh change of variables that keeps
an iterate inside ``threat.bounds``, squared L2 norms, and class-score margins (the
general tensor helpers are in :mod:`advframe.ops`)."""

from __future__ import annotations

import torch

from advframe.errors import ParameterError

#: Shrinks ``2 * (x - lo) / (hi - lo) - 1`` away from ±1 before ``atanh`` so that inputs
#: exactly on the bounds map to finite ``w`` (Carlini & Wagner's reference code).
TANH_SHRINK = 0.999999


def check_params(owner: str, params: dict, at_least: dict[str, float] | None = None,
                 positive: tuple[str, ...] = ()) -> None:
    """Refuse hyper-parameters below their minimum (``at_least``) or not > 0 (``positive``).

    Raises:
        ParameterError: naming the attack, the parameter and the allowed range.
    """
    for key, minimum in (at_least or {}).items():
        if not float(params[key]) >= minimum:
            raise ParameterError(f"{owner}: {key}={params[key]} must be >= {minimum:g}")
    for key in positive:
        if not float(params[key]) > 0:
            raise ParameterError(f"{owner}: {key}={params[key]} must be > 0")


def to_tanh_space(x: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    """The ``w`` with ``from_tanh_space(w) ≈ x``: ``atanh((2 (x - lo) / (hi - lo) - 1) · 0.999999)``."""
    lo, hi = bounds
    unit = (x - lo) / (hi - lo) * 2 - 1
    return torch.atanh(unit.clamp(-1, 1) * TANH_SHRINK)


def from_tanh_space(w: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    """``lo + (hi - lo) · (tanh(w) + 1) / 2``: always inside ``[lo, hi]``."""
    lo, hi = bounds
    return lo + (hi - lo) * (torch.tanh(w) + 1) / 2


def sq_l2(delta: torch.Tensor) -> torch.Tensor:
    """Per-example squared L2 norm."""
    return delta.reshape(delta.shape[0], -1).pow(2).sum(dim=1)


def check_classes(z: torch.Tensor, labels: torch.Tensor, what: str) -> None:
    """Refuse class indices that the class-score vector ``z`` cannot index."""
    if z.dim() != 2:
        raise ParameterError(f"{what} must be a (batch, classes) matrix, got shape {tuple(z.shape)}")
    if labels.numel() and int(labels.max()) >= z.shape[1]:
        raise ParameterError(f"class {int(labels.max())} is out of range for {what} with "
                             f"{z.shape[1]} columns: check the labels or targets")


def margin(z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``z[labels] - max_{i != labels} z_i`` per example (positive: ``labels`` wins)."""
    real = z.gather(1, labels.view(-1, 1)).squeeze(1)
    other = z.masked_fill(torch.nn.functional.one_hot(labels, z.shape[1]).bool(), float("-inf")).amax(dim=1)
    return real - other


def runner_up(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The highest-scoring class other than ``y`` per example."""
    return scores.masked_fill(torch.nn.functional.one_hot(y, scores.shape[1]).bool(), float("-inf")).argmax(dim=1)
