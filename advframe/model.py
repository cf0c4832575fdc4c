"""The Model protocol: a network plus its decision rule.

A model's ``forward`` takes inputs in ``threat.bounds`` (normalisation lives inside the
model). ``loss``, ``predict`` and ``scores`` give its own decision rule, so attacks go
through the model's own training loss instead of a hard-coded cross-entropy.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn


@runtime_checkable
class Model(Protocol):
    """What the evaluator and attacks need from a classifier."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-example training loss of ``outputs`` against class indices ``y``."""
        ...

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        """Predicted class index per example."""
        ...

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        """Per-class scores, higher = more likely (drives least-likely targets, top-5)."""
        ...


class Classifier(nn.Module):
    """Base class for models whose outputs are logits trained with cross-entropy.

    Subclasses implement ``forward``; override ``loss``/``predict``/``scores`` for
    another decision rule (for example MSE to codewords).
    """

    name: str = ""
    summary: str = ""

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-example cross-entropy."""
        return F.cross_entropy(outputs, y, reduction="none")

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        """Arg-max of the scores."""
        return self.scores(outputs).argmax(dim=1)

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        """The logits themselves."""
        return outputs


class WrappedClassifier(Classifier):
    """Wraps a plain ``nn.Module`` that returns logits: cross-entropy and arg-max."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def is_model(obj: Any) -> bool:
    """True when ``obj`` already carries a decision rule (loss, predict, scores)."""
    return all(callable(getattr(obj, m, None)) for m in ("loss", "predict", "scores"))


def as_model(module: nn.Module) -> nn.Module:
    """Return ``module`` if it follows the Model protocol, else wrap it as a logits classifier."""
    if is_model(module):
        return module
    if not isinstance(module, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(module).__name__}")
    return WrappedClassifier(module)


def model_config(model: nn.Module) -> tuple[str | None, dict[str, Any]]:
    """The registry name and constructor keywords a model was built with (or ``None, {}``)."""
    return getattr(model, "_advframe_name", None), dict(getattr(model, "_advframe_config", {}))
