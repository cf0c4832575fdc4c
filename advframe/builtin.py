"""Built-in components that name no paper: the ``standard`` training defense.

Registered through the same hooks as any plugin (see :func:`advframe.plugins.host`).
"""

from __future__ import annotations

from typing import Any

import torch

from advframe.defense import Defense
from advframe.hookspecs import hookimpl
from advframe.model import Model


class StandardTraining(Defense):
    """Standard (non-adversarial) training: the mean of the model's own per-example loss.

    The loss is ``model.loss(model(x), y).mean()`` (cross-entropy for a plain
    classifier, MSE to codewords for a codeword model, ...). Statistics: ``clean_acc``.
    """

    name = "standard"
    summary = "standard training on clean inputs with the model's own loss (no defense)"
    defaults: dict[str, Any] = {}

    def training_loss(self, model: Model, x: torch.Tensor, y: torch.Tensor, step: int
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        outputs = model(x)
        loss = model.loss(outputs, y).mean()
        with torch.no_grad():
            acc = (model.predict(outputs) == y).float().mean().item()
        return loss, {"clean_acc": acc}


@hookimpl
def register_defenses(register):
    """Register the ``standard`` defense."""
    register(StandardTraining)
