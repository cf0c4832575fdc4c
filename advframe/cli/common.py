"""Helpers every command shares, plugins' commands included: devices, declared defaults, option parsing.

Plugins that add commands (``register_commands``) import these, never the command
modules (:mod:`advframe.cli.app`, :mod:`advframe.cli.train`).
"""

from __future__ import annotations

from typing import Any

from advframe import plugins
from advframe.errors import ParameterError
from advframe.options import resolve_device as _resolve_device
from advframe.params import check_seed_value
from advframe.threat import parse_eps


def resolve_device(device: str) -> str:
    """``--device``: ``auto`` -> cuda when available, else cpu; refuse an unknown device or cuda without a GPU.

    The command line's wording of :func:`advframe.options.resolve_device`, the one resolver.
    """
    return str(_resolve_device(device, "--device"))


def default_name(kind: str, option: str, use: str = "") -> str:
    """The component a plugin declared as the default of ``kind``; an error naming ``option`` if none."""
    name = plugins.registry().default(kind, use)
    if name is None:
        raise ParameterError(f"no plugin declares a default {kind[:-1]}: pass {option} NAME "
                             f"(see 'advframe list {kind}')")
    return name


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


def parse_batch_size(text: str | int) -> int | None:
    """``--batch-size``: a positive number of examples, or ``auto`` (None: found on the device).

    Raises:
        ParameterError: for anything else.
    """
    if isinstance(text, str) and text.strip().lower() == "auto":
        return None
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise ParameterError(f"--batch-size '{text}' is invalid: use a positive number of examples per batch, "
                             f"or auto") from None
    check_positive(value, "--batch-size", "examples per batch (or auto)")
    return value


def check_image_size(value: int | None, option: str = "--image-size") -> None:
    """Refuse an image side outside 8..4096 pixels (None: not given)."""
    if value is not None and not 8 <= value <= 4096:
        raise ParameterError(f"{option} {value} is invalid: use a side between 8 and 4096 pixels")
