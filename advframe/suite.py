"""Attack suites: named, ordered attack lists for worst-case evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Suite:
    """An ordered list of attacks (with their parameters) that plugins register by name.

    In a worst-case evaluation the attacks run in this order, each only on the examples
    every earlier one failed on.

    Attributes:
        name: snake_case name, as given to ``advframe eval --suite``.
        attacks: ``((attack name, params), ...)`` in run order.
        summary: one line for ``advframe list suites``.
    """

    name: str
    attacks: tuple[tuple[str, dict[str, Any]], ...]
    summary: str = ""
