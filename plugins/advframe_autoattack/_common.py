"""Pieces shared by the AutoAttack attacks: parameter checks, the clean pass, target classes."""

from __future__ import annotations

from typing import Any

import torch
from advframe_gradient.losses import require_classes

from advframe.params import check_int

#: AutoAttack's standard number of target classes for apgd_t and fab_t.
AUTOATTACK_TARGETS = 9


def check_targets_param(owner: str, value: Any) -> None:
    """``n_target_classes`` is ``None`` (AutoAttack's 9, capped) or an integer >= 1."""
    if value is not None:
        check_int(owner, "n_target_classes", value, 1)


def target_count(owner: str, requested: int | None, classes: int) -> int:
    """How many target classes to attack.

    ``None`` means AutoAttack's 9 capped at ``classes - 1``; an explicit ``k`` needs at
    least ``k + 1`` classes (:class:`~advframe.errors.ParameterError` naming both numbers).
    """
    if requested is None:
        require_classes(owner, "a targeted attack", 2, classes)
        return min(AUTOATTACK_TARGETS, classes - 1)
    require_classes(owner, f"n_target_classes={requested}", requested + 1, classes)
    return int(requested)


def top_other_classes(scores: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` highest-scoring classes other than ``y`` per example, best first ``(n, k)``.

    For a correctly classified example these are the reference's targets
    ``scores.sort()[:, -2], ..., [:, -(k+1)]``.
    """
    others = scores.scatter(1, y.view(-1, 1), float("-inf"))
    return others.topk(k, dim=1).indices
