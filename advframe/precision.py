"""Faster attack passes that do not change what is counted: bf16 autocast and channels_last.

* :class:`Autocast` runs a model's forward under ``torch.autocast`` in bfloat16 and hands
  back float32 outputs. The engine gives it to the *attacks* only (``amp``): the
  adversarial batches stay float32, the threat-model audit reads them in float32, the
  evaluator classifies them with the float32 model, and an example whose goal only the
  bf16 view met is attacked again in float32 (:meth:`advframe.engine.Engine.craft`), so an
  attack that stops early on bf16's word leaves no example half-attacked.
* :func:`channels_last_applies`: the NHWC memory layout speeds up convolutions on CUDA
  (tensor cores). It changes no value beyond floating-point reassociation, and is used
  only on CUDA by default, so CPU results stay bit-identical.
"""

from __future__ import annotations

import torch
from torch import nn

from advframe.model import ModelWrapper

AMP_DTYPE = torch.bfloat16


class Autocast(ModelWrapper):
    """``model``'s forward under bf16 autocast, outputs returned in float32; its own decision rule.

    Args:
        model: the Model (its ``loss``, ``predict`` and ``scores`` are used unchanged).
        device_type: ``"cuda"`` or ``"cpu"`` (the device the model runs on).
    """

    def __init__(self, model: nn.Module, device_type: str):
        super().__init__(model)
        self.device_type = device_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=AMP_DTYPE):
            out = self.model(x)
        return out.float() if torch.is_floating_point(out) else out


def has_convolutions(model: nn.Module) -> bool:
    """Whether the model holds 2-d convolutions (the layers channels_last speeds up)."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def channels_last_applies(choice: bool | None, device: torch.device | str, model: nn.Module,
                          example: torch.Tensor) -> bool:
    """Whether to run in channels_last: ``choice`` when given, else on CUDA for 4-d inputs to a conv net."""
    if example.dim() != 4:
        return False
    if choice is not None:
        return bool(choice)
    return torch.device(device).type == "cuda" and has_convolutions(model)
