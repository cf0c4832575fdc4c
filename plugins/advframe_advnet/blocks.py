"""The residual block of the adversarial-networks paper's appendix (its Figure 2), shared by D2 and the generators."""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """residual-block(d, s, k): conv d×d (stride s) – BN – ReLU – conv d×d – BN, plus the
    shortcut, then ReLU (He et al. 2016).

    The shortcut is the identity, or a 1×1 convolution with stride ``s`` and BN when the
    stride or the number of channels changes.

    Args:
        in_channels: input channels.
        out_channels: k, the output channels.
        stride: s, the stride of the first convolution.
        kernel: d, the side of the filters.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, kernel: int = 3):
        super().__init__()
        pad = kernel // 2
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel, stride, pad, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel, 1, pad, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


def residual_stage(in_channels: int, out_channels: int, blocks: int, stride: int = 1) -> nn.Sequential:
    """``blocks`` residual blocks; the first has stride ``stride`` and changes the channels."""
    layers = [ResidualBlock(in_channels, out_channels, stride)]
    layers += [ResidualBlock(out_channels, out_channels) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)
