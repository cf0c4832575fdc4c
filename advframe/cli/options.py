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
                                 f"or --param pgd.steps=10")
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
