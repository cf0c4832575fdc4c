"""Parsing of repeatable CLI options (``--param key=value``, ``--eps 8/255``)."""

from __future__ import annotations

from typing import Any

from advframe.errors import ParameterError
from advframe.params import check_seed_value
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




def check_seed(seed: int, option: str = "--seed") -> int:
    """Refuse a seed outside ``0 <= seed < 2**32``, before any work starts."""
    return check_seed_value(seed, option)


def check_positive(value: int | None, option: str, what: str) -> None:
    """Refuse ``value`` < 1 for a count option (None: not given)."""
    if value is not None and value < 1:
        raise ParameterError(f"{option} {value} is invalid: use a positive number of {what}")


def check_not_empty(*pairs: tuple[str | None, str]) -> None:
    """Refuse an option given as an empty string (``--model ""`` used to mean the default model)."""
    for value, option in pairs:
        if value is not None and not str(value).strip():
            raise ParameterError(f"{option} is empty ({value!r}): pass a name, or drop {option} for the default")
