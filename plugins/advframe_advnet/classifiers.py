"""The classifiers of the adversarial-networks paper's appendix (its Figure 3): D1 for MNIST and D2, a ResNet for
32×32 images.

The adversarial-networks paper rescales inputs to [-1, 1]; these models take inputs in [0, 1] (the data sets'
bounds) and do the rescaling inside ``forward`` (``(x − 0.5) / 0.5`` by default), so that
threat models stay in the data's own scale.
"""

from __future__ import annotations

import torch
from torch import nn

from advframe.errors import ParameterError
from advframe.model import Classifier
from advframe_advnet.blocks import residual_stage


class _Rescaled(Classifier):
    """A classifier that maps inputs ``x`` to ``(x − shift) / scale`` before its layers."""

    def __init__(self, shift: float, scale: float):
        super().__init__()
        if not scale > 0:
            raise ParameterError(f"model '{self.name}': scale must be > 0, got {scale}")
        self.shift, self.scale = float(shift), float(scale)

    def rescale(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


class D1(_Rescaled):
    """D1 of the adversarial-networks paper (appendix, Figure 3a), the LeNet-5-like network of its MNIST experiments.

    conv2d(5,1,32) – ReLU – maxpool(2) – conv2d(5,1,64) – ReLU – maxpool(2) – FC(classes),
    with 'same' padding (28×28 → 7×7×64 before the FC layer).

    Args:
        in_channels: input channels (1 for MNIST).
        num_classes: output classes.
        image_size: side of the square inputs (divisible by 4).
        shift: subtracted from the inputs (0.5 maps [0, 1] to [-0.5, 0.5]).
        scale: then divided (0.5: the inputs reach [-1, 1] as in the paper).
    """

    name = "d1_cnn"
    summary = "D1 of the adversarial-networks paper: conv5-32, pool, conv5-64, pool, FC (MNIST)"

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28, shift: float = 0.5,
                 scale: float = 0.5):
        super().__init__(shift, scale)
        if image_size < 4 or image_size % 4:
            raise ParameterError(f"model 'd1_cnn': image_size must be a multiple of 4, got {image_size}")
        self.features = nn.Sequential(nn.Conv2d(in_channels, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2))
        side = image_size // 4
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(64 * side * side, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.rescale(x)))


class D2(_Rescaled):
    """D2 of the adversarial-networks paper (appendix, Figure 3b): the standard ResNet for 32×32 inputs (ResNet-20).

    conv2d(3,1,16) – BN – ReLU, residual-block(3,1,16) ×3, residual-block(3,2,32),
    residual-block(3,1,32) ×2, residual-block(3,2,64), residual-block(3,1,64) ×2,
    global average pooling (avgpool(8) on 32×32 inputs), FC(classes).

    Args:
        in_channels: input channels (3 for CIFAR-10 and SVHN).
        num_classes: output classes.
        shift: subtracted from the inputs.
        scale: then divided (the default maps [0, 1] to [-1, 1]).
    """

    name = "d2_resnet"
    summary = "D2 of the adversarial-networks paper: ResNet-20 for 32x32 images"

    def __init__(self, in_channels: int = 3, num_classes: int = 10, shift: float = 0.5, scale: float = 0.5):
        super().__init__(shift, scale)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU())
        self.stages = nn.Sequential(residual_stage(16, 16, 3), residual_stage(16, 32, 3, stride=2),
                                    residual_stage(32, 64, 3, stride=2))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(self.rescale(x))))
