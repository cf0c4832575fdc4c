"""``example_stripes``: a synthetic data set of striped images in four orientations."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import torch

from advframe import Dataset

ANGLES = (0.0, math.pi / 2, math.pi / 4, 3 * math.pi / 4)  # horizontal, vertical, diagonal, anti-diagonal
SIZES = {"train": 800, "test": 200}
SEEDS = {"train": 1, "test": 2}


class Stripes(Dataset):
    """Synthetic 1×12×12 grey images of sinusoidal stripes; the class is the orientation.

    The images are generated from a fixed seed per split, not collected: the data set is
    synthetic and says nothing about natural images. Each example is
    ``0.5 + 0.35 · sin(2π f (u cos θ + v sin θ) + φ)`` plus Gaussian noise (σ = 0.05),
    clipped to [0, 1], with θ the class's angle (0, 90, 45, 135 degrees), a random
    frequency f in [0.15, 0.3] cycles per pixel and a random phase φ. Classes are
    balanced; 800 train and 200 test examples.
    """

    name: ClassVar[str] = "example_stripes"
    summary: ClassVar[str] = "synthetic 1x12x12 stripe images in 4 orientations, generated from a seed (800/200)"
    num_classes: ClassVar[int] = 4
    input_shape: ClassVar[tuple[int, ...]] = (1, 12, 12)
    bounds: ClassVar[tuple[float, float]] = (0.0, 1.0)
    default_eps: ClassVar[tuple[float, ...]] = (0.05, 0.1, 0.2)
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    defaults: ClassVar[dict[str, Any]] = {}

    def read(self, split: str, data_dir: Path | None) -> tuple[torch.Tensor, torch.Tensor]:
        n = SIZES[split]
        g = torch.Generator().manual_seed(SEEDS[split])
        y = torch.arange(n) % self.num_classes
        y = y[torch.randperm(n, generator=g)]
        theta = torch.tensor(ANGLES)[y].view(n, 1, 1)
        freq = (0.15 + 0.15 * torch.rand(n, generator=g)).view(n, 1, 1)
        phase = (2 * math.pi * torch.rand(n, generator=g)).view(n, 1, 1)
        side = self.input_shape[-1]
        v, u = torch.meshgrid(torch.arange(side, dtype=torch.float32), torch.arange(side, dtype=torch.float32),
                              indexing="ij")
        wave = torch.sin(2 * math.pi * freq * (u * torch.cos(theta) + v * torch.sin(theta)) + phase)
        x = 0.5 + 0.35 * wave + 0.05 * torch.randn(n, side, side, generator=g)
        return x.clamp(0.0, 1.0).unsqueeze(1).float(), y.long()
