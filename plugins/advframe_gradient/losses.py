"""Margin losses on class scores, per example: the CW margin and the DLR losses, and the
``loss`` parameter of the iterative gradient attacks that ascends one of them.

Each takes ``scores`` of shape ``(n, classes)`` (``model.scores(outputs)``, higher =
more likely) and returns one value per example; HIGHER is more adversarial, so an
attack ascends them. They need more classes than cross-entropy does and say so with a
:class:`~advframe.errors.ParameterError` naming both numbers (:func:`require_classes`).
"""

from __future__ import annotations

import difflib

import torch

from advframe.attack import Objective
from advframe.errors import ParameterError
from advframe.model import Model

#: Keeps the DLR denominator away from zero when the top scores tie (the reference's 1e-12).
DLR_TINY = 1e-12


def require_classes(owner: str, what: str, needed: int, have: int) -> None:
    """Raise :class:`ParameterError` when ``have`` classes are fewer than ``needed`` for ``what``.

    Example message: ``attack 'apgd_dlr': the DLR loss needs at least 3 classes, the model has 2``.
    """
    if have < needed:
        raise ParameterError(f"{owner}: {what} needs at least {needed} classes, the model has {have}")


def _true_and_best_other(scores: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``z_y`` and ``max_{i != y} z_i`` per example."""
    z_y = scores.gather(1, y.view(-1, 1)).squeeze(1)
    others = scores.scatter(1, y.view(-1, 1), float("-inf"))
    return z_y, others.amax(dim=1)


def margin_loss(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The Carlini–Wagner margin ``max_{i != y} z_i - z_y`` (Carlini & Wagner, S&P 2017).

    Positive exactly when some other class outscores ``y``. The loss Square Attack
    ascends (Andriushchenko et al., ECCV 2020, §3). Needs at least 2 classes.
    """
    require_classes("margin_loss", "the margin loss", 2, scores.shape[1])
    z_y, other = _true_and_best_other(scores, y)
    return other - z_y


def dlr_loss(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference of Logits Ratio, untargeted (Croce & Hein, ICML 2020, eq. (6)).

    ``DLR(z, y) = -(z_y - max_{i != y} z_i) / (z_π1 - z_π3 + 1e-12)`` with ``π`` sorting
    the scores in decreasing order. Invariant to shifting and (positive) rescaling of the
    scores, so it cannot be defeated by scaling logits. Needs at least 3 classes.
    """
    require_classes("dlr_loss", "the DLR loss", 3, scores.shape[1])
    z_y, other = _true_and_best_other(scores, y)
    top = scores.topk(3, dim=1).values
    return -(z_y - other) / (top[:, 0] - top[:, 2] + DLR_TINY)


def targeted_dlr_loss(scores: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Targeted DLR (Croce & Hein, ICML 2020, eq. (7)).

    ``-(z_y - z_t) / (z_π1 - (z_π3 + z_π4) / 2 + 1e-12)``: ascending it raises the target
    score ``z_t`` above the true score ``z_y``. Needs at least 4 classes.
    """
    require_classes("targeted_dlr_loss", "the targeted DLR loss", 4, scores.shape[1])
    z_y = scores.gather(1, y.view(-1, 1)).squeeze(1)
    z_t = scores.gather(1, target.view(-1, 1)).squeeze(1)
    top = scores.topk(4, dim=1).values
    return -(z_y - z_t) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + DLR_TINY)


#: What an iterative attack's ``loss`` parameter may name: the model's own loss
#: (``model.loss``, cross-entropy for a plain classifier), the Carlini–Wagner margin, or DLR.
LOSSES = ("model", "margin", "dlr")


def check_loss(owner: str, loss: object) -> None:
    """Raise :class:`ParameterError` unless ``loss`` is one of :data:`LOSSES`."""
    if loss not in LOSSES:
        close = difflib.get_close_matches(str(loss), LOSSES, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"give one of {', '.join(LOSSES)}"
        raise ParameterError(f"{owner}: loss={loss!r} is not a loss it knows: {hint}")


def loss_objective(owner: str, loss: str, model: Model, y: torch.Tensor, target: torch.Tensor | None) -> Objective:
    """The per-example quantity an attack ascends for ``loss`` (one of :data:`LOSSES`).

    Untargeted: ``model.loss(out, y)``, :func:`margin_loss` or :func:`dlr_loss` of the
    scores and ``y``. Targeted: minus ``model.loss(out, t)``, the target's margin
    ``z_t - max_{i != t} z_i`` (minus :func:`margin_loss` of ``t``), or
    :func:`targeted_dlr_loss` (Croce & Hein 2020, eq. (7)). Too few classes for the margin
    or DLR loss raise :class:`ParameterError` naming ``owner`` and both numbers.
    """
    check_loss(owner, loss)
    if loss == "model":
        if target is None:
            return lambda out: model.loss(out, y)
        return lambda out: -model.loss(out, target)
    needed = {"margin": 2, "dlr": 3 if target is None else 4}[loss]
    what = {"margin": "the margin loss", "dlr": "the DLR loss" if target is None else "the targeted DLR loss"}[loss]

    def ascend(out: torch.Tensor) -> torch.Tensor:
        scores = model.scores(out)
        require_classes(owner, what, needed, scores.shape[1])
        if loss == "margin":
            return margin_loss(scores, y) if target is None else -margin_loss(scores, target)
        return dlr_loss(scores, y) if target is None else targeted_dlr_loss(scores, y, target)

    return ascend
