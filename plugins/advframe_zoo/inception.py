"""Inception v3 whose parameter names are torchvision's.

Szegedy et al., *Rethinking the Inception Architecture for Computer Vision* (CVPR 2016),
laid out as ``torchvision.models.inception_v3`` (``Inception3``), so that torchvision's
weights (``inception_v3_google-0cc3c7bd.pth``, a plain state dict, also timm's
``inception_v3.tv_in1k``) load unchanged with ``load_state_dict(..., strict=True)``. It is
the network of Kurakin et al., *Adversarial Machine Learning at Scale* (ICLR 2017).

Inputs are images in [0, 1]. The network holds no normalisation and no
``transform_input``: advframe wraps it in :class:`advframe.Normalized` from the
checkpoint's metadata.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from advframe.model import Classifier
from advframe.params import check_int
from advframe_zoo.resnet import check_bool

Size = int | tuple[int, int]


class BasicConv2d(nn.Module):
    """Convolution (no bias), batch norm (eps 0.001), ReLU: torchvision's ``BasicConv2d``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: kernel size, an int or (height, width).
        stride: stride.
        padding: zero padding, an int or (height, width).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Size, stride: int = 1,
                 padding: Size = 0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: torch.Tensor) -> torch.Tensor:
    """3×3 average pooling, stride 1, padding counted (as torchvision's blocks)."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)


class InceptionA(nn.Module):
    """35×35 module (paper Fig. 5): 1×1; 1×1→5×5; 1×1→3×3→3×3; avg-pool→1×1.

    Outputs 224 + ``pool_features`` channels (the 5×5 branch is torchvision's, for the
    paper's two stacked 3×3).

    Args:
        in_channels: input channels.
        pool_features: output channels of the pooling branch.
    """

    def __init__(self, in_channels: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg3(x))], 1)


class InceptionB(nn.Module):
    """Grid reduction 35→17 (paper Fig. 10): 3×3/2; 1×1→3×3→3×3/2; max-pool/2.

    Args:
        in_channels: input channels; outputs 480 + ``in_channels``.
    """

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
    """17×17 module with factorised 7×7 convolutions (paper Fig. 6, n = 7); 768 channels out.

    Branches: 1×1; 1×1→1×7→7×1; 1×1→7×1→1×7→7×1→1×7; avg-pool→1×1.

    Args:
        in_channels: input channels.
        channels_7x7: width inside the 7×7 branches.
    """

    def __init__(self, in_channels: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d7 = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d7 = conv(d7)
        return torch.cat([self.branch1x1(x), b7, d7, self.branch_pool(_avg3(x))], 1)


class InceptionD(nn.Module):
    """Grid reduction 17→8: 1×1→3×3/2; 1×1→1×7→7×1→3×3/2; max-pool/2.

    Args:
        in_channels: input channels; outputs 512 + ``in_channels``.
    """

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """8×8 module with expanded filter banks (paper Fig. 7); 2048 channels out.

    Branches: 1×1; 1×1→(1×3 ‖ 3×1); 1×1→3×3→(1×3 ‖ 3×1); avg-pool→1×1.

    Args:
        in_channels: input channels.
    """

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s3 = self.branch3x3_1(x)
        d3 = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(s3), self.branch3x3_2b(s3),
                          self.branch3x3dbl_3a(d3), self.branch3x3dbl_3b(d3), self.branch_pool(_avg3(x))], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier on the 17×17 grid (paper Section 4): avg-pool 5×5/3, 1×1, 5×5, fc.

    Needs a map of at least 17×17 (inputs of 299×299 or so).

    Args:
        in_channels: input channels (768).
        num_classes: output classes.
    """

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.conv0 = BasicConv2d(in_channels, 128, 1)
        self.conv1 = BasicConv2d(128, 768, 5)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.conv0(F.avg_pool2d(x, kernel_size=5, stride=3)))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


class InceptionV3(Classifier):
    """Inception v3 for 3×299×299 images (Szegedy et al., CVPR 2016), torchvision's names.

    Layout (``torchvision.models.Inception3``): the stem ``Conv2d_1a_3x3`` (3×3/2, 32),
    ``Conv2d_2a_3x3`` (32), ``Conv2d_2b_3x3`` (64), max-pool 3×3/2, ``Conv2d_3b_1x1`` (80),
    ``Conv2d_4a_3x3`` (192), max-pool 3×3/2; ``Mixed_5b``..``Mixed_5d``
    (:class:`InceptionA`), ``Mixed_6a`` (:class:`InceptionB`), ``Mixed_6b``..``Mixed_6e``
    (:class:`InceptionC`), ``AuxLogits`` (:class:`InceptionAux`), ``Mixed_7a``
    (:class:`InceptionD`), ``Mixed_7b``/``Mixed_7c`` (:class:`InceptionE`), global average
    pooling, dropout 0.5 and ``fc``. Every convolution is a :class:`BasicConv2d` (no bias,
    batch norm with eps 0.001). 27,161,264 parameters with 1000 classes and the auxiliary
    head (23,834,568 without). The pooling is adaptive, so inputs of 75×75 and up pass.

    The auxiliary head ``AuxLogits`` is kept only so that torchvision's checkpoints (which
    hold its keys) load strictly; it is never run, and ``forward`` returns the main logits
    alone in training and in evaluation mode (torchvision returns ``(logits, aux)`` when
    training).

    torchvision's weights expect ``--normalize 0.5,0.5,0.5/0.5,0.5,0.5``: inputs in
    [-1, 1], which is what its ``transform_input=True`` computes from ImageNet-normalised
    input. Initialisation as torchvision's: truncated normal weights (std 0.1; 0.01 for
    ``AuxLogits.conv1``, 0.001 for ``AuxLogits.fc``), skipped on the ``meta`` device.

    Args:
        num_classes: output classes.
        aux_logits: hold the auxiliary head ``AuxLogits`` (its keys are in torchvision's
            ImageNet weights).

    Raises:
        ParameterError: for fewer than 2 classes or a non-bool ``aux_logits``.
    """

    name = "inception_v3"
    summary = "Inception v3 for 3x299x299 images, torchvision parameter names (Szegedy et al. 2016)"

    def __init__(self, *, num_classes: int = 1000, aux_logits: bool = True):
        super().__init__()
        check_int(f"model '{self.name}'", "num_classes", num_classes, 2)
        aux_logits = check_bool(self.name, "aux_logits", aux_logits)
        self.input_shape = (3, 299, 299)  # read by check_fits and to size imagefolder images
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.AuxLogits: InceptionAux | None = InceptionAux(768, num_classes) if aux_logits else None
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280)
        self.Mixed_7c = InceptionE(2048)
        self.dropout = nn.Dropout(p=0.5)
        self.fc = nn.Linear(2048, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """Truncated-normal weights as torchvision's, cut at ±2 std (torchvision cuts at ±2).

        Weights on the ``meta`` device are left alone: they hold no values.
        """
        stddev: dict[nn.Module, float] = {}
        if self.AuxLogits is not None:
            stddev = {self.AuxLogits.conv1.conv: 0.01, self.AuxLogits.fc: 0.001}
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and not m.weight.is_meta:
                std = stddev.get(m, 0.1)
                nn.init.trunc_normal_(m.weight, mean=0.0, std=std, a=-2 * std, b=2 * std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        out = F.max_pool2d(out, kernel_size=3, stride=2)
        out = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(out))
        out = F.max_pool2d(out, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                      self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            out = block(out)
        out = self.dropout(F.adaptive_avg_pool2d(out, 1).flatten(1))
        return self.fc(out)
