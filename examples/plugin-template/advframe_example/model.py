"""``example_mlp``: a two-layer perceptron for 1×12×12 inputs."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from advframe import Classifier
from advframe.errors import ParameterError


class ExampleMLP(Classifier):
    """Flatten → Linear(144, hidden) → ReLU → Linear(hidden, num_classes); cross-entropy, arg-max.

    Inputs are images in [0, 1]; the model centres them at 0.5 inside ``forward``
    (normalisation lives inside the model, as advframe's Model contract asks).

    Args:
        hidden: hidden units (default 64).
        num_classes: output classes (default 4, as ``example_stripes``).
    """

    name: ClassVar[str] = "example_mlp"
    summary: ClassVar[str] = "two-layer perceptron for 1x12x12 inputs (cross-entropy)"
    input_shape: ClassVar[tuple[int, ...]] = (1, 12, 12)

    def __init__(self, hidden: int = 64, num_classes: int = 4):
        super().__init__()
        if hidden < 1 or num_classes < 2:
            raise ParameterError(f"model '{self.name}': need hidden >= 1 and num_classes >= 2")
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(144, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x - 0.5)
