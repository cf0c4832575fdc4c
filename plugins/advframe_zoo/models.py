"""Small CNNs for 28×28 and 32×32 images, and the shipped standard-trained MNIST model.

The architecture follows the small MNIST networks of the papers (two 5×5 convolutions
with max-pooling and two fully connected layers); ``width`` is the width factor ρ of
Kurakin et al. (ICLR 2017, §4.3): every hidden layer has ρ times the base width.
"""

from __future__ import annotations

import math
from importlib import resources

import torch
from torch import nn

from advframe.errors import CheckpointError, ParameterError
from advframe.model import Classifier

def _scaled(base: int, width: float) -> int:
    return max(1, int(round(base * width)))


class SmallCNN(Classifier):
    """conv5×5(C→8ρ)-maxpool2-ReLU, conv5×5(8ρ→16ρ)-maxpool2-ReLU, FC(→128ρ)-ReLU, FC(→classes).

    With ``batch_norm`` every hidden layer is followed by batch normalisation (before the
    pooling and the ReLU), which makes the network markedly easier to attack (Galloway
    et al., *Batch Normalization is a Cause of Adversarial Vulnerability*, 2019): the
    shipped embedded model uses it (see docs/zoo.md).

    The convolutions are unpadded (LeNet style) and max-pooling comes before the ReLU
    (the same function as ReLU-then-pool, on 4× fewer values), which keeps the network
    cheap enough for iterative attacks on a laptop CPU: one forward + backward pass over
    1,000 digits costs about 0.2 s of CPU time, so iter_ll over eps
    (0.05, 0.1, 0.2, 0.3) (≈ 180 passes) takes well under a minute. Inputs are images in [0, 1]; ``mean``/``std``
    (per channel, optional) normalise them inside ``forward``.

    Args:
        in_channels: input channels.
        num_classes: output classes.
        width: width factor ρ (1.0 = 8/16 channels and 128 hidden units).
        image_size: side of the square input images.
        mean: per-channel mean subtracted inside forward (``None``: no normalisation).
        std: per-channel standard deviation divided inside forward.
        batch_norm: batch normalisation after each convolution and the hidden FC layer.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: float = 1.0, image_size: int = 28,
                 mean: list[float] | None = None, std: list[float] | None = None, batch_norm: bool = False):
        super().__init__()
        if not width > 0:
            raise ParameterError(f"model '{self.name}': width must be > 0, got {width}")
        if in_channels < 1 or num_classes < 2:
            raise ParameterError(f"model '{self.name}': need in_channels >= 1 and num_classes >= 2")
        side = ((image_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ParameterError(f"model '{self.name}': image_size {image_size} is too small (need >= 16)")
        c1, c2, h = _scaled(8, width), _scaled(16, width), _scaled(128, width)
        if not isinstance(batch_norm, bool):
            raise ParameterError(f"model '{self.name}': batch_norm must be true or false, got {batch_norm!r}")
        # without batch_norm the layer indices, and so the checkpoint keys, are those of older checkpoints
        bn2 = (lambda c: [nn.BatchNorm2d(c)]) if batch_norm else (lambda c: [])
        bn1 = [nn.BatchNorm1d(h)] if batch_norm else []
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5), *bn2(c1), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(c1, c2, 5), *bn2(c2), nn.MaxPool2d(2), nn.ReLU(),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c2 * side * side, h), *bn1, nn.ReLU(),
                                        nn.Linear(h, num_classes))
        norm = mean is not None or std is not None
        # checked on Python numbers: an op on a meta tensor (parameter counting builds models on
        # the meta device) would import torch's compiler, seconds of every model load
        mean_v = [float(v) for v in mean] if mean is not None else [0.0] * in_channels
        std_v = [float(v) for v in std] if std is not None else [1.0] * in_channels
        if (len(mean_v) != in_channels or len(std_v) != in_channels or not all(math.isfinite(v) for v in mean_v)
                or not all(0 < v < math.inf for v in std_v)):
            raise ParameterError(f"model '{self.name}': mean/std need {in_channels} finite values and std > 0")
        m = torch.tensor(mean_v, dtype=torch.float32)
        s = torch.tensor(std_v, dtype=torch.float32)
        self._normalise = norm
        self.input_shape = (in_channels, image_size, image_size)  # named by shape errors (advframe.dataset.check_fits)
        self.register_buffer("mean", m.view(1, -1, 1, 1), persistent=norm)
        self.register_buffer("std", s.view(1, -1, 1, 1), persistent=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._normalise:
            x = (x - self.mean) / self.std
        return self.classifier(self.features(x))


class MnistCNN(SmallCNN):
    """Small CNN for 1×28×28 digits with width factor ρ (``width``)."""

    name = "mnist_cnn"
    summary = "small CNN for 1x28x28 images (2 conv5x5 + 2 FC, width factor rho)"

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: float = 1.0,
                 mean: list[float] | None = None, std: list[float] | None = None, batch_norm: bool = False):
        super().__init__(in_channels, num_classes, width, 28, mean, std, batch_norm)


class CifarCNN(SmallCNN):
    """Small CNN for 3×32×32 colour images with width factor ρ (``width``)."""

    name = "cifar_cnn"
    summary = "small CNN for 3x32x32 images (2 conv5x5 + 2 FC, width factor rho)"

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: float = 1.0,
                 mean: list[float] | None = None, std: list[float] | None = None, batch_norm: bool = False):
        super().__init__(in_channels, num_classes, width, 32, mean, std, batch_norm)


def _shipped(filename: str) -> MnistCNN:
    """Load a checkpoint shipped in ``advframe_zoo/weights/`` (a normal advframe checkpoint)."""
    from advframe.api import model_from_checkpoint

    ref = resources.files("advframe_zoo").joinpath(f"weights/{filename}")
    with resources.as_file(ref) as path:
        if not path.is_file():
            raise CheckpointError(f"the shipped weights advframe_zoo/weights/{filename} are missing: reinstall advframe")
        return model_from_checkpoint(path).eval()


def mnist_cnn_standard() -> MnistCNN:
    """The shipped mnist_cnn, standard-trained on the mnist5k train split (see docs/zoo.md)."""
    return _shipped("mnist_cnn_standard.safetensors")


def mnist_cnn_mixed_step_ll() -> MnistCNN:
    """The shipped mnist_cnn trained with mixed_batch (step_ll, preset mnist) on mnist5k.

    Kurakin et al. 2017, Algorithm 1; reproduce with the ``advframe train`` command in
    docs/defenses-measured.md.
    """
    return _shipped("mnist_cnn_mixed_step_ll.safetensors")


def mnist_cnn_robust() -> MnistCNN:
    """The shipped robust mnist_cnn: ``pgd_at`` (Madry et al. 2018) with its recipe on mnist5k.

    Trained by the one ``advframe train`` command of docs/zoo.md; its checkpoint metadata
    names the defense, the recipe and the held-out history of every epoch.
    """
    return _shipped("mnist_cnn_robust.safetensors")


mnist_cnn_standard.name = "mnist_cnn_standard"  # type: ignore[attr-defined]
mnist_cnn_standard.summary = (  # type: ignore[attr-defined]
    "the shipped mnist_cnn, standard-trained on mnist5k (embedded default)")
mnist_cnn_mixed_step_ll.name = "mnist_cnn_mixed_step_ll"  # type: ignore[attr-defined]
mnist_cnn_mixed_step_ll.summary = (  # type: ignore[attr-defined]
    "the shipped mnist_cnn, mixed-batch step_ll adversarially trained on mnist5k (Kurakin 2017)")
mnist_cnn_robust.name = "mnist_cnn_robust"  # type: ignore[attr-defined]
mnist_cnn_robust.summary = (  # type: ignore[attr-defined]
    "the shipped mnist_cnn, pgd_at adversarially trained on mnist5k, robust at linf eps 0.3 (Madry 2018)")
