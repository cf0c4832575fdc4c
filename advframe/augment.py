"""Data augmentation of the training loop: random translations of image minibatches.

Robust generalisation needs more data than clean generalisation (Schmidt et al., NeurIPS
2018); on a small training set, shifting each image by a few pixels is the cheapest way
to see more of it (the random crop with padding of adversarial-training recipes, e.g.
Madry et al.'s CIFAR-10 and Rice et al. 2020). ``shift`` pads each image by ``SHIFT``
pixels of the lower bound (black, for images in [0, 1]) and crops it back at an offset
drawn per example, uniformly in ``[-SHIFT, SHIFT]`` on each axis.

The offsets of one minibatch come from a generator seeded by ``(seed, step)`` and are drawn
for the GLOBAL minibatch, so a resumed run and a run on several processes see the same
images as one uninterrupted process.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from advframe.errors import ParameterError
from advframe.ops import derive_seed

AUGMENTS = ("none", "shift")

#: Largest translation of ``shift``, in pixels per axis.
SHIFT = 2


def check_augment(augment: str) -> None:
    """Refuse an unknown augmentation, naming the ones there are."""
    if augment not in AUGMENTS:
        raise ParameterError(f"unknown augment '{augment}': use one of {', '.join(AUGMENTS)}")


def offsets(n: int, seed: int, step: int) -> torch.Tensor:
    """``(n, 2)`` offsets in ``[0, 2·SHIFT]`` (row, column) of minibatch ``step``'s ``n`` examples."""
    g = torch.Generator().manual_seed(derive_seed(seed, "augment", step))
    return torch.randint(0, 2 * SHIFT + 1, (n, 2), generator=g)


def shift(x: torch.Tensor, offset: torch.Tensor, fill: float) -> torch.Tensor:
    """Each image of ``x`` ``(N, C, H, W)`` translated: padded by :data:`SHIFT` with ``fill``,
    cropped back at ``offset`` (``(N, 2)``, rows and columns in ``[0, 2·SHIFT]``)."""
    if x.dim() != 4:
        raise ParameterError(f"augment=shift translates images (N, C, H, W); these inputs have shape "
                             f"{tuple(x.shape)}: use augment=none")
    n, _, h, w = x.shape
    padded = F.pad(x, (SHIFT, SHIFT, SHIFT, SHIFT), value=fill)
    off = offset.to(x.device)
    rows = (off[:, :1] + torch.arange(h, device=x.device)).view(n, 1, h, 1)
    cols = (off[:, 1:] + torch.arange(w, device=x.device)).view(n, 1, 1, w)
    index = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    channels = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
    return padded[index, channels, rows, cols]
