"""The generative networks of the adversarial-networks paper (appendix, Figure 4): G1, G2, G3.

Each generator maps its input to a perturbation DIRECTION ``d`` with ``‖d‖ ≤ 1`` in its
norm: for linf the last layer is tanh (adversarial networks §3: "adding a tanh layer as the final
layer of the generator network G, which normalizes the output to the range of [-1, 1]");
for l2 the output is divided by its per-example L2 norm ("appropriate normalization
layers in the final layer of G"). The adversarial example is ``clip(x + ε·d)``
(:meth:`Generator.perturb`), so one generator serves any ε.

All three share the decoder: residual-block(3,1,4k) ×6, deconv2d(3,2,2k)–BN–ReLU,
deconv2d(3,2,k)–BN–ReLU, conv2d(3,1,c). Inputs of side ``s`` (a multiple of 4) meet the
decoder at side ``s/4`` (8×8 for the paper's 32×32 images, 7×7 for MNIST).
"""

from __future__ import annotations

import abc
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from advframe.engine import audited_generated
from advframe.errors import ParameterError
from advframe.threat import ThreatModel
from advframe_advnet.blocks import residual_stage

KINDS = ("g1", "g2", "g3")
NORMS = ("linf", "l2")
MAX_WIDTH = 1024
"""Largest width factor k: the parameters grow with k squared (k = 1e8 asked for 2.9e18 bytes)."""


def _conv_bn_relu(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def _deconv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(cin, cout, 3, 2, padding=1, output_padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU()]


class Generator(nn.Module, metaclass=abc.ABCMeta):
    """Base of G1, G2, G3: the shared decoder and the norm head.

    Args:
        channels: c, channels of the images.
        image_size: side of the square images (a multiple of 4).
        num_classes: classes (the input size of G3).
        width: k, the width factor (default 64, as in the paper).
        norm: ``linf`` (tanh head) or ``l2`` (unit-L2 head).
    """

    kind = ""
    #: whether forward reads the labels (G3 does: an attack with it reads the true label)
    reads_label = False

    def __init__(self, channels: int = 1, image_size: int = 28, num_classes: int = 10, width: int = 64,
                 norm: str = "linf"):
        super().__init__()
        if norm not in NORMS:
            raise ParameterError(f"generator {self.kind}: unknown norm '{norm}': use linf or l2")
        if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= MAX_WIDTH:
            raise ParameterError(f"generator {self.kind}: width k={width!r} must be an integer from 1 to {MAX_WIDTH} "
                                 f"(paper: 8 narrow, 64 wide)")
        if image_size < 4 or image_size % 4:
            raise ParameterError(f"generator {self.kind}: image side {image_size} must be a multiple of 4 "
                                 f"(two stride-2 layers down and two up)")
        self.channels, self.image_size, self.num_classes = int(channels), int(image_size), int(num_classes)
        self.width, self.norm = int(width), norm
        self.side = image_size // 4
        k = self.width
        self.decoder = nn.Sequential(*_deconv_bn_relu(4 * k, 2 * k), *_deconv_bn_relu(2 * k, k),
                                     nn.Conv2d(k, channels, 3, 1, 1))

    def config(self) -> dict[str, Any]:
        """The constructor arguments and kind: enough to rebuild the network (checkpoints)."""
        return {"kind": self.kind, "channels": self.channels, "image_size": self.image_size,
                "num_classes": self.num_classes, "width": self.width, "norm": self.norm}

    @abc.abstractmethod
    def code(self, x: torch.Tensor, y: torch.Tensor, noise: torch.Generator | None) -> torch.Tensor:
        """The 4k × s/4 × s/4 feature map that enters the residual blocks."""

    def forward(self, x: torch.Tensor, y: torch.Tensor, noise: torch.Generator | None = None) -> torch.Tensor:
        """The direction ``d`` (shape of ``x``, ``‖d‖ ≤ 1`` per example in the generator's norm).

        Args:
            x: images (read by G1; G2 and G3 use only their shape and device).
            y: labels (read by G3).
            noise: generator of G2's Gaussian z (``None``: torch's global RNG).
        """
        out = self.decoder(self.blocks(self.code(x, y, noise)))
        if self.norm == "linf":
            return torch.tanh(out)
        flat = out.flatten(1).norm(p=2, dim=1).clamp_min(1e-12)
        return out / flat.view(-1, *([1] * (out.dim() - 1)))

    def perturb(self, x: torch.Tensor, y: torch.Tensor, eps: float, bounds: tuple[float, float],
                noise: torch.Generator | None = None) -> torch.Tensor:
        """``clip(x + ε·G(x), bounds)``: inside the ε-ball of the generator's norm and the bounds,
        audited as such by the engine (:func:`advframe.engine.audited_generated`)."""
        x_adv = (x + eps * self(x, y, noise)).clamp(bounds[0], bounds[1])
        return audited_generated(x_adv, x, ThreatModel(norm=self.norm, eps=float(eps), bounds=bounds),
                                 f"generator {self.kind}")


class EncoderDecoderGenerator(Generator):
    """G1 (adversarial networks, Figure 4a): an encoder–decoder that takes the image.

    conv2d(3,1,k)–BN–ReLU, conv2d(3,2,k)–BN–ReLU, conv2d(3,2,2k)–BN–ReLU,
    residual-block(3,1,4k) ×6, then the shared decoder and the norm head.
    """

    kind = "g1"

    def __init__(self, channels: int = 1, image_size: int = 28, num_classes: int = 10, width: int = 64,
                 norm: str = "linf"):
        super().__init__(channels, image_size, num_classes, width, norm)
        k = self.width
        self.encoder = nn.Sequential(*_conv_bn_relu(channels, k, 1), *_conv_bn_relu(k, k, 2),
                                     *_conv_bn_relu(k, 2 * k, 2))
        self.blocks = residual_stage(2 * k, 4 * k, 6)

    def code(self, x, y, noise):
        return self.encoder(x)


class GaussianGenerator(Generator):
    """G2 (adversarial networks, Figure 4b): a decoder from Gaussian ``z ∈ R^{(s/4)²·4k}``
    (256k for 32×32 images), reshaped to ``4k × s/4 × s/4``; it sees neither image nor label."""

    kind = "g2"

    def __init__(self, channels: int = 1, image_size: int = 28, num_classes: int = 10, width: int = 64,
                 norm: str = "linf"):
        super().__init__(channels, image_size, num_classes, width, norm)
        self.blocks = residual_stage(4 * self.width, 4 * self.width, 6)

    def code(self, x, y, noise):
        shape = (x.shape[0], 4 * self.width, self.side, self.side)
        return torch.randn(shape, generator=noise, dtype=x.dtype).to(x.device)


class LabelGenerator(Generator):
    """G3 (adversarial networks, Figure 4c): a decoder from the one-hot label, FC(256k) then reshape
    (``(s/4)²·4k`` units in general); after training, one perturbation per class."""

    kind = "g3"
    reads_label = True

    def __init__(self, channels: int = 1, image_size: int = 28, num_classes: int = 10, width: int = 64,
                 norm: str = "linf"):
        super().__init__(channels, image_size, num_classes, width, norm)
        self.embed = nn.Linear(num_classes, 4 * self.width * self.side * self.side)
        self.blocks = residual_stage(4 * self.width, 4 * self.width, 6)

    def code(self, x, y, noise):
        onehot = F.one_hot(y.long(), self.num_classes).to(x.dtype)
        return self.embed(onehot).view(-1, 4 * self.width, self.side, self.side)


GENERATORS: dict[str, type[Generator]] = {"g1": EncoderDecoderGenerator, "g2": GaussianGenerator,
                                          "g3": LabelGenerator}


def build_generator(kind: str, channels: int, image_size: int, num_classes: int, width: int = 64,
                    norm: str = "linf") -> Generator:
    """The generator ``kind`` (g1, g2 or g3) for images of ``channels × image_size²``.

    Raises:
        ParameterError: for an unknown kind, non-square images or a bad width or norm.
    """
    if kind not in GENERATORS:
        raise ParameterError(f"unknown generator '{kind}': use g1 (image), g2 (Gaussian z) or g3 (label)")
    return GENERATORS[kind](channels, image_size, num_classes, width, norm)


def generator_for(kind: str, shape: tuple[int, ...], num_classes: int, width: int, norm: str) -> Generator:
    """The generator ``kind`` for examples of ``shape`` = (channels, height, width).

    Raises:
        ParameterError: if the examples are not square images.
    """
    if len(shape) != 3 or shape[1] != shape[2]:
        raise ParameterError(f"generators need square images (channels, side, side), got examples of shape "
                             f"{tuple(shape)}")
    return build_generator(kind, int(shape[0]), int(shape[1]), int(num_classes), width, norm)
