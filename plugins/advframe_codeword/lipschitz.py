"""Upper Lipschitz bounds of a network's layers (Saito & Roy §3.4, Figure 4).

The L2 Lipschitz constant of a network is at most the product of its layers' operator
norms (``Λ^l = ‖θ^l‖ Λ^{l−1}``, Saito & Roy §3.4, after Szegedy et al. and Parseval
networks). ReLU, tanh, softmax and flattening are 1-Lipschitz; a max-pool whose windows
overlap ``ceil(k/s)`` times per axis is ``ceil(k/s)``-Lipschitz.

* Fully connected layer: the largest singular value of its weight matrix.
* Convolution: the exact singular values of a stride-1 *circular* convolution of an
  ``n×n`` input, from the 2-D DFT of its kernel (Sedghi, Gupta & Long, *The Singular
  Values of Convolutional Layers*, ICLR 2019): pad each ``(out, in)`` kernel slice to
  ``n×n``, take its 2-D FFT, and for every frequency take the singular values of the
  ``c_out × c_in`` matrix of transforms. The result is exact for circular padding with
  ``2p = k − 1`` ("same" size) and stride 1. Any other layer is bounded by it: a
  zero-padded convolution is a valid convolution of the padded ``(n+2p)×(n+2p)`` input
  (padding is an isometric embedding), a valid convolution keeps a subset of the
  circular outputs, and a strided one subsamples them — each step can only shrink the
  norm, so the value reported for those layers is an upper bound (``exact=False``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from advframe.errors import ParameterError
from advframe.model import eval_mode

ONE_LIPSCHITZ: tuple[type[nn.Module], ...] = (nn.ReLU, nn.Tanh, nn.Flatten, nn.Identity, nn.Dropout,
                                               nn.Softmax, nn.ELU, nn.Hardtanh)


def conv_singular_values(weight: torch.Tensor, input_size: tuple[int, int]) -> torch.Tensor:
    """All singular values of the stride-1 circular convolution with ``weight`` on ``n1×n2`` inputs.

    Sedghi, Gupta & Long (2019), Theorem 6: the operator is block-diagonalised by the 2-D
    DFT; its singular values are those of the ``c_out × c_in`` matrices
    ``(FFT2(K[o, i]) at frequency (u, v))`` over all ``n1·n2`` frequencies.

    Args:
        weight: kernel ``(c_out, c_in, k1, k2)`` (PyTorch's cross-correlation layout;
            flipping the kernel does not change the singular values).
        input_size: ``(n1, n2)``, each at least the kernel size.

    Returns:
        A float64 tensor ``(n1, n2, min(c_out, c_in))``.

    Raises:
        ParameterError: if the input is smaller than the kernel.
    """
    if weight.dim() != 4:
        raise ParameterError(f"conv_singular_values needs a 4-D kernel, got shape {tuple(weight.shape)}")
    n1, n2 = int(input_size[0]), int(input_size[1])
    if n1 < weight.shape[2] or n2 < weight.shape[3]:
        raise ParameterError(f"input size {n1}x{n2} is smaller than the kernel {tuple(weight.shape[2:])}: "
                             f"pass a larger --input-size")
    transforms = torch.fft.fft2(weight.detach().to("cpu", torch.float64), s=(n1, n2))
    return torch.linalg.svdvals(transforms.permute(2, 3, 0, 1))


def _dilated(weight: torch.Tensor, dilation: tuple[int, int]) -> torch.Tensor:
    d1, d2 = dilation
    if d1 == 1 and d2 == 1:
        return weight
    c_out, c_in, k1, k2 = weight.shape
    out = weight.new_zeros(c_out, c_in, d1 * (k1 - 1) + 1, d2 * (k2 - 1) + 1)
    out[:, :, ::d1, ::d2] = weight
    return out


def conv2d_operator_norm(conv: nn.Conv2d, input_size: tuple[int, int]) -> tuple[float, bool]:
    """Largest singular value of ``conv`` on ``input_size`` inputs, and whether it is exact.

    See the module docstring for the circular-padding assumption: exact for stride 1,
    circular padding with ``2p = k_eff − 1``; an upper bound otherwise.

    Raises:
        ParameterError: for circular padding wider than "same" (outputs would repeat).
    """
    weight = _dilated(conv.weight.detach(), tuple(conv.dilation))  # type: ignore[arg-type]
    k1, k2 = weight.shape[2], weight.shape[3]
    if isinstance(conv.padding, str):
        pads = ((k1 - 1) // 2, (k2 - 1) // 2) if conv.padding == "same" else (0, 0)
        pad = (k1 - 1, k2 - 1) if conv.padding == "same" else (0, 0)
    else:
        pads = tuple(int(p) for p in conv.padding)  # type: ignore[assignment]
        pad = (2 * pads[0], 2 * pads[1])
    n1, n2 = int(input_size[0]), int(input_size[1])
    if conv.padding_mode == "circular":
        if pad[0] > k1 - 1 or pad[1] > k2 - 1:
            raise ParameterError(f"circular padding {pads} is wider than 'same' for kernel {(k1, k2)}: "
                                 f"the Lipschitz bound does not cover repeated outputs")
        size = (n1, n2)
        exact = pad == (k1 - 1, k2 - 1) and tuple(conv.stride) == (1, 1)
    else:
        size = (n1 + pad[0], n2 + pad[1])
        exact = False
    groups = int(conv.groups)
    per = weight.shape[0] // groups
    norm = max(float(conv_singular_values(weight[g * per:(g + 1) * per], size).max()) for g in range(groups))
    return norm, exact


def linear_operator_norm(weight: torch.Tensor) -> float:
    """Largest singular value of a fully connected layer's weight matrix (Saito & Roy §3.4)."""
    return float(torch.linalg.matrix_norm(weight.detach().to("cpu", torch.float64), ord=2))


def power_iteration_norm(op: Callable[[torch.Tensor], torch.Tensor], input_shape: tuple[int, ...],
                         iterations: int = 100, seed: int = 0) -> float:
    """Largest singular value of a *linear* operator by power iteration on ``AᵀA``.

    ``Aᵀ`` is applied with autograd (a vector–Jacobian product), so ``op`` can be any
    linear function, for example an explicit convolution; it is an independent check of
    :func:`conv_singular_values`.

    Args:
        op: the linear map (no bias).
        input_shape: shape of its input (including a batch axis of 1).
        iterations: power-iteration steps.
        seed: seed of the random start.
    """
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(input_shape, generator=gen, dtype=torch.float64)
    v /= v.norm()
    sigma = 0.0
    for _ in range(iterations):
        x = v.clone().requires_grad_(True)
        with torch.enable_grad():
            u = op(x)
            (w,) = torch.autograd.grad(u, x, grad_outputs=u.detach())
        sigma = math.sqrt(float(w.norm()))
        v = w.detach() / w.norm()
    return sigma


@dataclass(frozen=True)
class LayerBound:
    """One layer's operator norm and the running product bound (``Λ^l``)."""

    name: str
    kind: str
    input_shape: tuple[int, ...]
    operator_norm: float
    cumulative: float
    exact: bool
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"name": self.name, "kind": self.kind, "input_shape": list(self.input_shape),
                "operator_norm": self.operator_norm, "cumulative": self.cumulative, "exact": self.exact,
                "note": self.note}


@dataclass
class LipschitzReport:
    """Per-layer bounds of one model and their product (the network's upper bound)."""

    model: str
    input_shape: tuple[int, ...]
    layers: list[LayerBound] = field(default_factory=list)
    unaccounted: list[str] = field(default_factory=list)

    @property
    def product(self) -> float:
        """Product of the layers' operator norms: an upper bound of the network's L2 Lipschitz constant."""
        return self.layers[-1].cumulative if self.layers else 1.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"model": self.model, "input_shape": list(self.input_shape), "product": self.product,
                "layers": [layer.to_dict() for layer in self.layers], "unaccounted": list(self.unaccounted)}


def _pool_factor(pool: nn.MaxPool2d) -> float:
    k = pool.kernel_size if isinstance(pool.kernel_size, tuple) else (pool.kernel_size,) * 2
    s = pool.stride if isinstance(pool.stride, tuple) else (pool.stride or pool.kernel_size,) * 2
    return float(math.ceil(k[0] / s[0]) * math.ceil(k[1] / s[1])) ** 0.5


def _first_channels(model: nn.Module) -> int:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return int(m.in_channels)
    return 1


MAX_INPUT_SIZE = 4096
"""Largest input side: the zero image of the forward pass and the FFTs grow with its square."""


def _input_shapes(model: nn.Module, channels: int, size: tuple[int, int], name: str = "model"
                  ) -> dict[str, tuple[int, ...]]:
    """The input shape each leaf module sees in a forward pass of a zero image (eval mode, restored after)."""
    seen: dict[str, tuple[int, ...]] = {}
    handles = []

    def recorder(key: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: Any) -> None:
            seen.setdefault(key, tuple(inputs[0].shape))

        return hook

    for mod_name, module in model.named_modules():
        if not list(module.children()):
            handles.append(module.register_forward_hook(recorder(mod_name)))
    try:
        with eval_mode(model), torch.no_grad():
            model(torch.zeros(1, channels, *size, device=next(iter(model.parameters())).device))
    except (RuntimeError, ValueError, IndexError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ParameterError(f"model '{name}' cannot run on a {channels}x{size[0]}x{size[1]} input ({first}): "
                             f"pass the --input-size and --in-channels it was built for") from None
    finally:
        for h in handles:
            h.remove()
    return seen


def _normalise_factor(module: nn.Module) -> float | None:
    """``1 / min(std)`` for a module that normalises its input (flag ``_normalise``), else None."""
    std = getattr(module, "std", None)
    if getattr(module, "_normalise", False) and isinstance(std, torch.Tensor):
        return 1.0 / float(std.min())
    return None


def _accounted(module: nn.Module) -> bool:
    """Whether the bound knows the layer: a convolution, a fully connected layer, a max-pool or 1-Lipschitz."""
    return isinstance(module, (nn.Conv2d, nn.Linear, nn.MaxPool2d, *ONE_LIPSCHITZ))


def _operator_norm(module: nn.Module, shape: tuple[int, ...]) -> tuple[str, float, bool, str] | None:
    """``(kind, operator norm, exact, note)`` of a known leaf layer; None when it contributes no factor."""
    if isinstance(module, nn.Conv2d):
        norm, exact = conv2d_operator_norm(module, (shape[-2], shape[-1]))
        note = "exact (circular, stride 1)" if exact else "upper bound (zero/valid padding or stride)"
        return "conv", norm, exact, note
    if isinstance(module, nn.Linear):
        return "linear", linear_operator_norm(module.weight), True, ""
    if isinstance(module, nn.MaxPool2d):
        norm = _pool_factor(module)
        return None if norm == 1.0 else ("maxpool", norm, False, "sqrt(windows per input)")
    return None  # 1-Lipschitz


def lipschitz_bounds(model: nn.Module, input_size: int | tuple[int, int] = 28, in_channels: int | None = None,
                     name: str = "model") -> LipschitzReport:
    """Per-layer operator norms of ``model`` and their running product (Saito & Roy §3.4).

    A forward pass of a zero image through the model records, with forward hooks, the
    input size each layer sees. Convolutions and fully connected layers get their
    operator norms; 1-Lipschitz modules are skipped; a max-pool contributes
    ``sqrt(#windows per input)``; a model that normalises its input with a buffer
    ``std`` (the zoo's convention, flag ``_normalise``) contributes ``1 / min(std)``.
    Any other leaf module is listed in ``unaccounted`` (the product then does not
    cover it).

    Args:
        model: the network (any ``nn.Module``; a codeword model's heads are 1-Lipschitz).
        input_size: input side ``n`` (or ``(n1, n2)``).
        in_channels: input channels (default: those of the first convolution).
        name: name for the report.
    """
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(size) != 2 or any(isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_INPUT_SIZE
                             for n in size):
        raise ParameterError(f"input_size must be a positive integer up to {MAX_INPUT_SIZE} (or two), "
                             f"got {input_size!r}")
    if in_channels is not None and (isinstance(in_channels, bool) or not isinstance(in_channels, int)
                                    or in_channels < 1):
        raise ParameterError(f"in_channels must be a positive integer, got {in_channels!r}")
    channels = in_channels if in_channels is not None else _first_channels(model)
    seen = _input_shapes(model, channels, size, name)
    report = LipschitzReport(name, (channels, *size))
    running = 1.0
    for mod_name, module in model.named_modules():
        factor = _normalise_factor(module)
        if factor is not None:
            running *= factor
            report.layers.append(LayerBound(mod_name or "input", "normalise", (channels, *size), factor, running,
                                            True, "divides by std"))
        if mod_name not in seen:
            continue
        if not _accounted(module):
            report.unaccounted.append(f"{mod_name} ({type(module).__name__})")
            continue
        shape = seen[mod_name][1:]
        bound = _operator_norm(module, shape)
        if bound is not None:
            kind, norm, exact, note = bound
            running *= norm
            report.layers.append(LayerBound(mod_name, kind, shape, norm, running, exact, note))
    return report


def explicit_conv(conv: nn.Conv2d) -> Callable[[torch.Tensor], torch.Tensor]:
    """The linear map of ``conv`` without bias, as a function (float64), honouring its padding mode."""
    weight = conv.weight.detach().to(torch.float64)

    def op(x: torch.Tensor) -> torch.Tensor:
        if conv.padding_mode != "zeros" and not isinstance(conv.padding, str):
            p1, p2 = conv.padding
            x = F.pad(x, (p2, p2, p1, p1), mode=conv.padding_mode)
            return F.conv2d(x, weight, None, conv.stride, 0, conv.dilation, conv.groups)
        return F.conv2d(x, weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)

    return op
