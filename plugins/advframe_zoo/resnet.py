"""ResNets whose parameter names are those of RobustBench and torchvision.

A RobustBench checkpoint (its state dict) loads into these networks unchanged, with
``load_state_dict(..., strict=True)``:

* :class:`PreActResNet18`: the pre-activation ResNet-18 of He et al., *Identity Mappings
  in Deep Residual Networks* (ECCV 2016), in the CIFAR form of RobustBench's
  ``robustbench/model_zoo/architectures/resnet.py`` (``PreActResNet`` with
  ``PreActBlock``; ``bn_before_fc`` and ``out_shortcut`` select its variants).
* :class:`ResNet50`: the ResNet-50 of He et al., *Deep Residual Learning for Image
  Recognition* (CVPR 2016), laid out as ``torchvision.models.resnet50`` (stride on the
  3×3 convolution of each bottleneck), the network of RobustBench's ImageNet ResNet-50
  entries.

Inputs are images in [0, 1]. The networks hold no normalisation (mean/std buffers would
add state-dict keys the checkpoints lack): advframe wraps them in
:class:`advframe.Normalized` from the checkpoint's metadata.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from advframe.errors import ParameterError
from advframe.model import Classifier
from advframe.params import check_int


def check_bool(model: str, what: str, value: object) -> bool:
    """``value`` if it is a bool, else a one-line ParameterError naming the model and the parameter."""
    if not isinstance(value, bool):
        raise ParameterError(f"model '{model}': {what} must be true or false, got {value!r}")
    return value


def _conv3x3(in_planes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False)


def kaiming_init_(model: nn.Module) -> None:
    """He-normal (fan-out) convolution weights, as torchvision's ResNets.

    Weights on the ``meta`` device are left alone: drawing normal values there imports
    torch's compiler (seconds), and meta tensors hold no values anyway.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and not m.weight.is_meta:
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


class PreActBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3×3, BN-ReLU-conv3×3, plus a shortcut.

    He et al. 2016, *Identity Mappings in Deep Residual Networks*, Fig. 4(e). Where the
    stride or the width changes, the shortcut is a 1×1 convolution (``shortcut.0``, no
    batch norm), applied to the block's input (RobustBench's ``PreActBlock``) or, with
    ``out_shortcut``, to its pre-activation ``relu(bn1(x))`` (``PreActBlockV2``).

    Args:
        in_planes: input channels.
        planes: output channels.
        stride: stride of the first convolution and of the shortcut.
        out_shortcut: feed the projection shortcut with the pre-activation.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, out_shortcut: bool = False):
        super().__init__()
        self.out_shortcut = out_shortcut
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.shortcut: nn.Sequential | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(_conv1x1(in_planes, planes, stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        if self.shortcut is None:
            skip = x
        else:
            skip = self.shortcut(out if self.out_shortcut else x)
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return out + skip


def _preact_layer(in_planes: int, planes: int, stride: int, out_shortcut: bool) -> nn.Sequential:
    return nn.Sequential(PreActBlock(in_planes, planes, stride, out_shortcut),
                         PreActBlock(planes, planes, 1, out_shortcut))


class PreActResNet18(Classifier):
    """Pre-activation ResNet-18 for 3×32×32 images (He et al., ECCV 2016), RobustBench's names.

    Layout (RobustBench ``PreActResNet(PreActBlock, [2, 2, 2, 2])``): ``conv1`` (3×3,
    64), ``layer1``..``layer4`` of two :class:`PreActBlock` each (64, 128, 256, 512
    channels; strides 1, 2, 2, 2), an optional final ``bn`` (BN-ReLU before pooling),
    global average pooling and ``linear``. 11,171,146 parameters with 10 classes
    (11,172,170 with ``bn_before_fc``).

    The RobustBench entries map to: ``Wong2020Fast`` and ``Andriushchenko2020Understanding``:
    the defaults; CIFAR-10 ``Rice2020Overfitting`` (``PreActBlockV2``) and CIFAR-100
    ``Rice2020Overfitting``: ``bn_before_fc=True, out_shortcut=True``.

    Args:
        num_classes: output classes.
        bn_before_fc: a final batch norm (key ``bn``) and ReLU before the pooling.
        out_shortcut: projection shortcuts read the pre-activation (see :class:`PreActBlock`).

    Raises:
        ParameterError: for fewer than 2 classes or a non-bool flag.
    """

    name = "preact_resnet18"
    summary = "pre-activation ResNet-18 for 3x32x32 images, RobustBench parameter names (He et al. 2016)"

    def __init__(self, num_classes: int = 10, bn_before_fc: bool = False, out_shortcut: bool = False):
        super().__init__()
        check_int(f"model '{self.name}'", "num_classes", num_classes, 2)
        self.bn_before_fc = check_bool(self.name, "bn_before_fc", bn_before_fc)
        out_shortcut = check_bool(self.name, "out_shortcut", out_shortcut)
        self.input_shape = (3, 32, 32)  # read by advframe.dataset.check_fits
        self.conv1 = _conv3x3(3, 64)
        self.layer1 = _preact_layer(64, 64, 1, out_shortcut)
        self.layer2 = _preact_layer(64, 128, 2, out_shortcut)
        self.layer3 = _preact_layer(128, 256, 2, out_shortcut)
        self.layer4 = _preact_layer(256, 512, 2, out_shortcut)
        self.bn = nn.BatchNorm2d(512) if self.bn_before_fc else None
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        if self.bn is not None:
            out = F.relu(self.bn(out))
        # RobustBench pools with avg_pool2d(out, 4): the same on the 4×4 maps of 32×32 inputs
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


class Bottleneck(nn.Module):
    """ResNet bottleneck: conv1×1-BN-ReLU, conv3×3(stride)-BN-ReLU, conv1×1(×4)-BN, add, ReLU.

    He et al. 2016, *Deep Residual Learning for Image Recognition*, Fig. 5 (right), with
    the stride on the 3×3 convolution as torchvision's ``Bottleneck``. Where the stride
    or the width changes, the shortcut is ``downsample`` = (conv1×1, BN).

    Args:
        in_planes: input channels.
        planes: bottleneck width; the block outputs ``4 * planes`` channels.
        stride: stride of the 3×3 convolution and of the shortcut.
    """

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = _conv1x1(in_planes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, out_planes)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_planes != out_planes:
            self.downsample = nn.Sequential(_conv1x1(in_planes, out_planes, stride), nn.BatchNorm2d(out_planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + skip)


def _bottleneck_layer(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    out_planes = planes * Bottleneck.expansion
    return nn.Sequential(Bottleneck(in_planes, planes, stride),
                         *(Bottleneck(out_planes, planes) for _ in range(blocks - 1)))


class ResNet50(Classifier):
    """ResNet-50 for 3×224×224 images (He et al., CVPR 2016), torchvision's parameter names.

    Layout (``torchvision.models.resnet50``): ``conv1`` (7×7, stride 2), ``bn1``, ReLU,
    3×3 max-pooling (stride 2), ``layer1``..``layer4`` of 3, 4, 6, 3 :class:`Bottleneck`
    blocks (widths 64, 128, 256, 512; outputs ×4), global average pooling and ``fc``.
    25,557,032 parameters with 1000 classes. The pooling is adaptive, so smaller inputs
    (down to 32×32) pass too.

    Args:
        num_classes: output classes.

    Raises:
        ParameterError: for fewer than 2 classes.
    """

    name = "resnet50"
    summary = "ResNet-50 for 3x224x224 images, torchvision/RobustBench parameter names (He et al. 2016)"

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        check_int(f"model '{self.name}'", "num_classes", num_classes, 2)
        self.input_shape = (3, 224, 224)  # read by check_fits and to size imagefolder images
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = _bottleneck_layer(64, 64, 3, 1)
        self.layer2 = _bottleneck_layer(256, 128, 4, 2)
        self.layer3 = _bottleneck_layer(512, 256, 6, 2)
        self.layer4 = _bottleneck_layer(1024, 512, 3, 2)
        self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)
        kaiming_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.max_pool2d(out, kernel_size=3, stride=2, padding=1)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)
