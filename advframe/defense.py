"""The Defense protocol: what the training loop asks of a training procedure, and the
training recipe a defense declares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from advframe.model import Model
from advframe.params import Configurable
from advframe.threat import ThreatModel


class Defense(Configurable):
    """Base class for training procedures (standard, adversarial training, ...).

    The training loop calls :meth:`setup` once, then :meth:`training_loss` for every
    minibatch, and saves :meth:`state_dict` in checkpoints so that training resumes.

    A defense declares the recipe it trains well with in ``recipe``: any of the training
    settings of :data:`advframe.training.RECIPE_KEYS` (``epochs``, ``batch_size``,
    ``optimizer``, ``lr``, ``momentum``, ``weight_decay``, ``schedule``, ``warmup_epochs``,
    ``holdout``, ``keep``, ``stop_on_collapse``). :func:`advframe.train` uses them for
    every setting its caller leaves out; ``preset_recipes`` adjusts them per preset.
    ``monitor`` names the attack (registry name and parameters) that measures held-out
    robust accuracy after every epoch; None for a defense without a threat model.
    """

    summary: ClassVar[str] = ""
    recipe: ClassVar[Mapping[str, Any]] = {}
    preset_recipes: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    def training_recipe(self) -> dict[str, Any]:
        """The declared recipe, with the chosen preset's adjustments applied."""
        return {**self.recipe, **self.preset_recipes.get(getattr(self, "preset", None) or "", {})}

    def monitor(self) -> tuple[str, dict[str, Any]] | None:
        """The attack that measures held-out robustness each epoch: ``(name, params)`` or None."""
        return None

    def threat_model(self, bounds: tuple[float, float]) -> ThreatModel | None:
        """The threat model this procedure trains against, from its own parameters.

        :func:`advframe.train` uses it when the caller gives none, hands the one in
        force to :meth:`setup` as ``context["threat"]`` and stores it in checkpoints.
        ``None`` (the default) for training that is not adversarial.
        """
        return None

    def setup(self, model: Model, data: Any, context: dict[str, Any]) -> None:
        """Prepare for training ``model`` on ``data``.

        ``context`` holds the device, seed, epochs, steps, batch size, rank and the
        threat model in force (``"threat"``: a :class:`ThreatModel` or None).
        """

    def training_loss(self, model: Model, x: torch.Tensor, y: torch.Tensor, step: int
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        """The scalar loss to minimise on this minibatch, and statistics to show.

        Statistics conventionally include ``clean_acc`` and, for adversarial
        training, ``adv_acc`` (fractions of the minibatch).
        """
        raise NotImplementedError(f"defense {self.name} does not implement training_loss()")

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state to store in checkpoints."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def tensors(self) -> dict[str, torch.Tensor]:
        """Extra tensors (e.g. a generator's weights) to store in checkpoints."""
        return {}

    def load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`tensors` returned."""
