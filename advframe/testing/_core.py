"""Findings, the conformance error, toy models and the backward-pass counting wrapper."""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from advframe.model import Classifier, as_model
from advframe.ops import derive_seed

Severity = Literal["error", "warning"]
SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


@dataclass(frozen=True)
class Finding:
    """One result of a conformance check.

    Attributes:
        check: short name of the check (``"audit"``, ``"determinism"``, ...).
        component: the component checked (``"attack 'NAME'"``).
        message: what was wrong and how to fix it.
        severity: ``"error"`` (breaks a contract) or ``"warning"`` (suspicious).
    """

    check: str
    component: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"[{self.severity}] {self.component}: {self.check}: {self.message}"


class ConformanceError(AssertionError):
    """Raised when a component breaks a contract; ``findings`` holds every problem found.

    A subclass of :class:`AssertionError`, so test runners report it as a failure.
    """

    def __init__(self, findings: Iterable[Finding]):
        self.findings: list[Finding] = list(findings)
        errors = [f for f in self.findings if f.severity == "error"]
        lines = "\n".join(f"  - {f}" for f in errors)
        super().__init__(f"{len(errors)} conformance error(s):\n{lines}")


class Findings:
    """Collects findings for one component."""

    def __init__(self, component: str):
        self.component = component
        self.items: list[Finding] = []

    def error(self, check: str, message: str) -> None:
        """Record a broken contract."""
        self.items.append(Finding(check, self.component, message, "error"))

    def warn(self, check: str, message: str) -> None:
        """Record something suspicious that breaks no contract."""
        self.items.append(Finding(check, self.component, message, "warning"))

    def guard(self, check: str, fn: Any, *args: Any, **kwargs: Any) -> tuple[bool, Any]:
        """Call ``fn``; an exception becomes an error finding. Returns ``(ok, result)``."""
        try:
            return True, fn(*args, **kwargs)
        except Exception as exc:  # the component's own code failed: report, do not crash
            self.error(check, f"raised {type(exc).__name__}: {exc}")
            return False, None

    def finish(self, raise_errors: bool) -> list[Finding]:
        """Return the findings, or raise :class:`ConformanceError` when any is an error."""
        if raise_errors and any(f.severity == "error" for f in self.items):
            raise ConformanceError(self.items)
        return list(self.items)


class ToyClassifier(Classifier):
    """A seeded affine classifier with a ReLU hidden layer, for checking attacks on any input shape.

    Args:
        input_shape: shape of one input, e.g. ``(1, 8, 8)``.
        num_classes: number of classes.
        hidden: hidden units (0 for a purely linear model).
        seed: seeds the weights.
    """

    def __init__(self, input_shape: tuple[int, ...] = (1, 8, 8), num_classes: int = 10, hidden: int = 32,
                 seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        dim = 1
        for s in input_shape:
            dim *= int(s)
        layers: list[nn.Module] = [nn.Flatten()]
        if hidden:
            layers += [nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)]
        else:
            layers += [nn.Linear(dim, num_classes)]
        self.net = nn.Sequential(*layers)
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 / max(1, p.shape[-1]) ** 0.5) * 3.0)
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def toy_model(input_shape: tuple[int, ...] = (1, 8, 8), num_classes: int = 10, seed: int = 0) -> ToyClassifier:
    """A small seeded classifier in eval mode (see :class:`ToyClassifier`)."""
    return ToyClassifier(input_shape, num_classes, seed=seed).eval()


class CountingModel(nn.Module):
    """Wraps a Model and counts forward passes and backward passes through its outputs.

    A backward pass is counted each time a gradient flows into an output tensor of
    :meth:`forward` (``loss.backward()`` or ``torch.autograd.grad``), so a
    batch-summed loss differentiated once counts as one pass, whatever the batch size.
    ``loss``, ``predict`` and ``scores`` are the wrapped model's.

    Attributes:
        forwards: forward calls since the last :meth:`reset`.
        rows: examples forwarded since the last :meth:`reset` (the rows of every batch).
        backwards: backward passes since the last :meth:`reset`.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.inner = as_model(model)
        self.reset()

    def reset(self) -> None:
        """Zero every counter."""
        self.forwards = 0
        self.rows = 0
        self.backwards = 0

    def _count_backward(self, grad: torch.Tensor) -> None:
        self.backwards += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards += 1
        self.rows += x.shape[0]
        out = self.inner(x)
        if isinstance(out, torch.Tensor) and out.requires_grad:
            out.register_hook(self._count_backward)
        return out

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The wrapped model's per-example loss."""
        return self.inner.loss(outputs, y)

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        """The wrapped model's prediction."""
        return self.inner.predict(outputs)

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        """The wrapped model's scores."""
        return self.inner.scores(outputs)


def instance(factory: Any) -> Any:
    """A fresh object from a class or zero-argument callable (a new one per check); an object as it is."""
    if isinstance(factory, type) or inspect.isfunction(factory) or isinstance(factory, functools.partial):
        return factory()
    return factory


def devices() -> list[torch.device]:
    """``cpu``, plus ``cuda`` when a GPU is available."""
    out = [torch.device("cpu")]
    if torch.cuda.is_available():
        out.append(torch.device("cuda"))
    return out


def random_inputs(n: int, input_shape: tuple[int, ...], bounds: tuple[float, float], seed: int
                  ) -> torch.Tensor:
    """``n`` seeded uniform inputs inside ``bounds``."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = bounds
    return lo + (hi - lo) * torch.rand((n, *input_shape), generator=g)


def random_labels(n: int, num_classes: int, seed: int) -> torch.Tensor:
    """``n`` seeded class indices."""
    g = torch.Generator().manual_seed(derive_seed(seed, "labels"))
    return torch.randint(0, num_classes, (n,), generator=g)
