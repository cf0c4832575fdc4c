"""Wide residual networks whose parameter names are RobustBench's.

Zagoruyko & Komodakis, *Wide Residual Networks* (BMVC 2016), in the form of RobustBench's
``robustbench/model_zoo/architectures/wide_resnet.py`` (itself from the TRADES code), so
that RobustBench's ``WideResNet`` checkpoints load unchanged with
``load_state_dict(..., strict=True)``. Inputs are images in [0, 1]; the network holds no
normalisation (advframe wraps it in :class:`advframe.Normalized` from the checkpoint's
metadata).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from advframe.errors import ParameterError
from advframe.model import Classifier
from advframe.params import check_int
from advframe_zoo.resnet import check_bool


class WideBasicBlock(nn.Module):
    """Pre-activation wide block: BN-ReLU-conv3×3, BN-ReLU-conv3×3, plus a shortcut.

    Zagoruyko & Komodakis 2016, Fig. 1(c) ("basic-wide", B(3,3)), without dropout. When
    the width changes, the shortcut is a 1×1 convolution ``convShortcut`` of the
    pre-activation ``relu1(bn1(x))``; otherwise it is the identity on ``x``. The module
    names (``bn1``, ``relu1``, ``conv1``, ``bn2``, ``relu2``, ``conv2``, ``convShortcut``)
    are RobustBench's ``BasicBlock``'s.

    Args:
        in_planes: input channels.
        out_planes: output channels.
        stride: stride of the first convolution and of the shortcut.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.convShortcut: nn.Conv2d | None = None
        if in_planes != out_planes:
            self.convShortcut = nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.relu1(self.bn1(x))
        out = self.conv2(self.relu2(self.bn2(self.conv1(act))))
        skip = x if self.convShortcut is None else self.convShortcut(act)
        return skip + out


class NetworkBlock(nn.Module):
    """One group of ``blocks`` :class:`WideBasicBlock`, held as ``layer`` (RobustBench's names).

    Args:
        blocks: number of blocks.
        in_planes: input channels of the first block.
        out_planes: output channels of every block.
        stride: stride of the first block.
    """

    def __init__(self, blocks: int, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.layer = nn.Sequential(*(WideBasicBlock(in_planes if i == 0 else out_planes, out_planes,
                                                    stride if i == 0 else 1) for i in range(blocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(Classifier):
    """WRN-``depth``-``width`` for 3×32×32 images (Zagoruyko & Komodakis 2016), RobustBench's names.

    Layout: ``conv1`` (3×3, 16), three groups ``block1``..``block3`` of (depth − 4) / 6
    :class:`WideBasicBlock` each (16·width, 32·width and 64·width channels; strides 1, 2,
    2), a final ``bn1`` and ReLU, global average pooling and ``fc``. Convolutions have no
    bias; ``fc`` has one. WRN-28-10 has 36,479,194 parameters with 10 classes.

    RobustBench's initialisation: convolution weights drawn from N(0, 2 / (k·k·out)),
    batch norms at weight 1 and bias 0, the ``fc`` bias at 0.

    Args:
        depth: total depth, 6n + 4 (10, 16, 22, 28, 34, 40, ..., 70).
        width: widening factor k.
        num_classes: output classes.
        sub_block1: add RobustBench's unused group ``sub_block1`` (same shape as ``block1``,
            never run), which the checkpoints of its ``sub_block1=True`` entries (e.g.
            ``Carmon2019Unlabeled``) hold.

    Raises:
        ParameterError: for a depth that is not 6n + 4, a width below 1, fewer than 2
            classes or a non-bool ``sub_block1``.
    """

    name = "wide_resnet"
    summary = "wide ResNet WRN-depth-width for 3x32x32 images, RobustBench parameter names (Zagoruyko 2016)"

    def __init__(self, depth: int = 28, width: int = 10, num_classes: int = 10, sub_block1: bool = False):
        super().__init__()
        check_int(f"model '{self.name}'", "depth", depth, 10)
        if (depth - 4) % 6:
            raise ParameterError(f"model '{self.name}': depth must be 6n+4 (10, 16, 22, 28, 34, ..., 70), "
                                 f"got {depth}")
        check_int(f"model '{self.name}'", "width", width, 1)
        check_int(f"model '{self.name}'", "num_classes", num_classes, 2)
        sub_block1 = check_bool(self.name, "sub_block1", sub_block1)
        self.input_shape = (3, 32, 32)  # read by advframe.dataset.check_fits
        blocks = (depth - 4) // 6
        c0, c1, c2, c3 = 16, 16 * width, 32 * width, 64 * width
        self.conv1 = nn.Conv2d(3, c0, kernel_size=3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(blocks, c0, c1, 1)
        if sub_block1:
            self.sub_block1 = NetworkBlock(blocks, c0, c1, 1)
        self.block2 = NetworkBlock(blocks, c1, c2, 2)
        self.block3 = NetworkBlock(blocks, c2, c3, 2)
        self.bn1 = nn.BatchNorm2d(c3)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(c3, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """RobustBench's initialisation (meta weights are skipped: they hold no values)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and not m.weight.is_meta:
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = self.relu(self.bn1(out))
        # RobustBench pools with avg_pool2d(out, 8): the same on the 8×8 maps of 32×32 inputs
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


class WRN28_10(WideResNet):
    """WRN-28-10 (36,479,194 parameters with 10 classes), RobustBench's names."""

    name = "wrn_28_10"
    summary = "WRN-28-10 for 3x32x32 images, RobustBench parameter names (Zagoruyko 2016)"

    def __init__(self, num_classes: int = 10, sub_block1: bool = False):
        super().__init__(depth=28, width=10, num_classes=num_classes, sub_block1=sub_block1)


class WRN34_10(WideResNet):
    """WRN-34-10 (46,160,474 parameters with 10 classes), RobustBench's names."""

    name = "wrn_34_10"
    summary = "WRN-34-10 for 3x32x32 images, RobustBench parameter names (Zagoruyko 2016)"

    def __init__(self, num_classes: int = 10, sub_block1: bool = False):
        super().__init__(depth=34, width=10, num_classes=num_classes, sub_block1=sub_block1)


class WRN70_16(WideResNet):
    """WRN-70-16 (266,796,506 parameters with 10 classes), RobustBench's names.

    The layout of RobustBench's ``WideResNet(depth=70, widen_factor=16)`` entries, not of
    its ``DMWideResNet`` (Gowal et al. / Rebuffi et al. checkpoints: other names, Swish).
    """

    name = "wrn_70_16"
    summary = "WRN-70-16 for 3x32x32 images, RobustBench parameter names (Zagoruyko 2016)"

    def __init__(self, num_classes: int = 10, sub_block1: bool = False):
        super().__init__(depth=70, width=16, num_classes=num_classes, sub_block1=sub_block1)
