"""Progress reporting: library loops call a callback; the CLI renders it with rich."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a long loop.

    Attributes:
        task: a short label ("clean", "iter_ll eps=0.1", "epoch 3", ...).
        completed: units done so far in this task.
        total: units in this task.
        info: numbers to show beside the bar (loss, accuracies, ...).
    """

    task: str
    completed: int
    total: int
    info: dict[str, Any] = field(default_factory=dict)


ProgressCallback = Optional[Callable[[ProgressEvent], None]]


def emit(callback: ProgressCallback, task: str, completed: int, total: int, **info: Any) -> None:
    """Send an event if a callback is set."""
    if callback is not None:
        callback(ProgressEvent(task, completed, total, info))
