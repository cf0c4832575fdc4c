"""A small network for 3×224×224 images: what benchmarks/bench_cifar_imagenet.py evaluates over an
image folder, so that the data pipeline, not the model, sets the memory and the time."""

from __future__ import annotations

import torch
from torch import nn


class Net(nn.Module):
    """conv 7×7 stride 4 (3→8) - ReLU - global average pool - linear (8→10)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.input_shape = (3, 224, 224)  # the image folder is resized to it
        self.conv = nn.Conv2d(3, 8, 7, stride=4)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))
