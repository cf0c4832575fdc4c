"""Parsing of repeatable CLI options (``--param key=value``, ``--eps 8/255``)."""

from __future__ import annotations

from typing import Any

from advframe.errors import ParameterError
from advframe.threat import parse_eps


def parse_eps_list(values: list[str] | None) -> list[float] | None:
    """``--eps`` values (numbers or fractions such as 8/255); None when none given."""
    if not values:
        return None
    return [parse_eps(v) for v in values]


def parse_params(values: list[str] | None) -> dict[str, dict[str, str] | str]:
    """``--param key=value`` (every component that takes ``key``) or ``name.key=value``."""
    out: dict[str, Any] = {}
    for item in values or []:
        if "=" not in item:
            raise ParameterError(f"--param '{item}' is not key=value: write e.g. --param steps=10 "
                                 f"or --param ATTACK.steps=10")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ParameterError(f"--param '{item}' has an empty key")
        if "." in key:
            scope, sub = key.split(".", 1)
            out.setdefault(scope, {})[sub] = value
        else:
            out[key] = value
    return out


SEED_LIMIT = 2 ** 32
"""Seeds are below 2**32: the engine derives per-batch seeds as ``seed * 1_000_003 + ...``,
which ``torch.manual_seed`` accepts only below 2**64 (a seed of 1e20 used to fail after
the clean pass)."""


def check_seed(seed: int, option: str = "--seed") -> int:
    """Refuse a seed outside ``0 <= seed < 2**32``, before any work starts."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise ParameterError(f"{option} {seed} is out of range: use an integer from 0 to {SEED_LIMIT - 1} (2**32 - 1)")
    return seed


def check_positive(value: int | None, option: str, what: str) -> None:
    """Refuse ``value`` < 1 for a count option (None: not given)."""
    if value is not None and value < 1:
        raise ParameterError(f"{option} {value} is invalid: use a positive number of {what}")
