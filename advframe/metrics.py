"""Running sums for evaluation metrics, mergeable across batches and processes.

Every field is either a sum or a maximum, so that shards evaluated on different
processes combine exactly (see :mod:`advframe.distributed`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

#: fields combined by maximum; every other field is a sum
MAX_FIELDS = frozenset({"max_perturbation"})


def topk_correct(scores: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean per example: is ``y`` among the ``k`` highest scores."""
    k = min(k, scores.shape[1])
    return (scores.topk(k, dim=1).indices == y.unsqueeze(1)).any(dim=1)


@dataclass
class RunTally:
    """Counts for one attack x eps run."""

    examples: int = 0            # examples counted (in batches that passed the audit)
    clean_correct: int = 0       # clean top-1 correct among counted examples
    top1: int = 0                # adversarial top-1 correct
    top5: int = 0                # adversarial top-5 correct
    flipped: int = 0             # clean-correct examples the attack made wrong (untargeted)
    broke: int = 0               # worst case: still-robust examples this attack broke
    hit_target: int = 0          # examples classified as the target (targeted)
    label_leaks: int = 0         # correct under the true-label attack, wrong under its predicted-label twin
    leak_measured: int = 0       # examples on which label leaking was measured
    max_perturbation: float = 0.0
    violations: int = 0          # examples that left the threat model (in refused batches)
    rejected_batches: int = 0
    rejected_examples: int = 0
    failed_batches: int = 0      # batches refused because the attack misbehaved (raised, bad output, wrote input)
    gradient_evaluations: float = 0.0  # sum over batches of (passes per example booked x batch size)
    forward_queries: float = 0.0       # the same for forward-only passes
    shared: int = 0              # batches whose cost was shared over the eps grid
    seconds: float = 0.0

    def add(self, **values: float) -> None:
        """Add to sum fields by name."""
        for key, value in values.items():
            setattr(self, key, getattr(self, key) + value)

    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "RunTally":
        """Inverse of :meth:`to_state`."""
        return cls(**state)

    def vector(self) -> list[float]:
        """The fields as floats, in declaration order (for all-reduce)."""
        return [float(getattr(self, f.name)) for f in fields(self)]

    @classmethod
    def from_vector(cls, values: list[float]) -> "RunTally":
        """Inverse of :meth:`vector`."""
        kw = {}
        for f, v in zip(fields(cls), values):
            kw[f.name] = float(v) if f.type in ("float", float) else int(round(v))
        return cls(**kw)


def ratio(num: float, den: float) -> float | None:
    """num/den, or None when den is 0."""
    return float(num) / float(den) if den else None
