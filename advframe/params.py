"""Declarative hyper-parameters shared by attacks and defenses.

A component lists its parameters and their defaults in ``defaults`` and, optionally,
named parameter sets in ``presets`` (for example the settings of a paper's table).
Values given on the command line as strings are converted to the type of the default.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from advframe.errors import ParameterError


def coerce(value: Any, default: Any, key: str, owner: str) -> Any:
    """Convert ``value`` (often a CLI string) to the type of ``default``.

    Raises:
        ParameterError: if the string cannot be read as that type.
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.lower() in ("none", "null") and (default is None or isinstance(default, str)):
        return None
    try:
        if isinstance(default, bool):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            from advframe.threat import parse_eps  # reads fractions such as 1/255

            if "/" in text:
                return parse_eps(text)
            return float(text)
        if default is None:
            for conv in (int, float):
                try:
                    return conv(text)
                except ValueError:
                    pass
            return text
    except ValueError:
        kind = type(default).__name__
        raise ParameterError(f"{owner}: parameter {key}={value!r} is not a valid {kind}") from None
    return text


MAX_COUNT = 1_000_000
"""Largest integer hyper-parameter (steps, restarts, queries, widths...): a count of 1e23
steps is a typo that would run until killed, so it is refused before any work starts."""
SEED_LIMIT = 2 ** 32
"""Seeds are integers in ``[0, 2**32)``, checked before any work starts; every stream's
seed is derived from one by :func:`advframe.ops.derive_seed`. Parameters named
``seed`` or ``*_seed`` too."""


def check_seed_value(seed: Any, what: str = "seed") -> int:
    """Return ``seed`` if it is an integer in ``[0, 2**32)``; else raise :class:`ParameterError` naming ``what``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise ParameterError(f"{what} {seed!r} is out of range: use an integer from 0 to {SEED_LIMIT - 1} "
                             f"(2**32 - 1)")
    return seed


def check_int_bounds(owner: str, values: Mapping[str, Any]) -> None:
    """Refuse integer parameters beyond :data:`MAX_COUNT` and seeds outside ``[0, 2**32)``.

    Components check their own lower bounds (``steps >= 0``...); this is the upper bound
    every integer shares, applied by :class:`Configurable` before ``validate``.
    """
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int):
            continue
        if key == "seed" or key.endswith("_seed"):
            check_seed_value(value, f"{owner}: parameter {key}")
        elif value > MAX_COUNT:
            raise ParameterError(f"{owner}: parameter {key}={value} is too large: use at most {MAX_COUNT:,}")


def check_range(owner: str, **values: tuple[Any, float, float]) -> None:
    """Raise :class:`ParameterError` unless each ``value`` is a finite number in ``[lo, hi]``.

    Called as ``check_range(owner, eps=(self.eps, 0.0, math.inf), ...)`` from ``validate``.
    """
    for key, (value, lo, hi) in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not lo <= value <= hi:
            raise ParameterError(f"{owner}: parameter {key}={value!r} must be a number in [{lo:g}, {hi:g}]")


def check_int(owner: str, key: str, value: Any, minimum: int) -> None:
    """Raise :class:`ParameterError` unless ``value`` is an integer (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ParameterError(f"{owner}: parameter {key}={value!r} must be an integer >= {minimum}")


def check_optional_int(owner: str, key: str, value: Any, minimum: int) -> None:
    """:func:`check_int`, except that ``None`` (e.g. ``seed=None``: unseeded) passes.

    Raises:
        ParameterError: if ``value`` is neither ``None`` nor an integer >= ``minimum``.
    """
    if value is not None:
        check_int(owner, key, value, minimum)


def check_nonnegative(owner: str, **values: Any) -> None:
    """Refuse any of ``values`` that is neither ``None`` nor a finite number >= 0.

    Called as ``check_nonnegative(owner, step_size=self.step_size, ...)`` from ``validate``.

    Raises:
        ParameterError: naming the owner, the parameter and its value.
    """
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ParameterError(f"{owner}: parameter {key}={value!r} must be a finite number >= 0")


class Configurable:
    """Mixin: keyword hyper-parameters validated against ``defaults``.

    Subclasses set ``defaults`` (name -> default value) and may set ``presets``
    (preset name -> parameter overrides). ``preset=NAME`` selects a preset; explicit
    keywords override it. The merged values become attributes and ``self.params``.
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, **params: Any) -> None:
        kind = next((c.__name__.lower() for c in type(self).__mro__ if c.__name__ in ("Attack", "Defense", "Dataset")),
                    type(self).__name__.lower())
        owner = f"{kind} '{self.name}'" if self.name else type(self).__name__
        preset = params.pop("preset", None)
        merged = dict(self.defaults)
        if preset is not None:
            if preset not in self.presets:
                known = ", ".join(sorted(self.presets)) or "none"
                raise ParameterError(f"{owner} has no preset '{preset}' (presets: {known})")
            merged.update(self.presets[preset])
        for key, value in params.items():
            if key not in self.defaults:
                close = difflib.get_close_matches(key, list(self.defaults), n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"its parameters: {', '.join(sorted(self.defaults)) or 'none'}"
                raise ParameterError(f"{owner} has no parameter '{key}': {hint}")
            merged[key] = coerce(value, self.defaults[key], key, owner)
        self.preset = preset
        self.params: dict[str, Any] = merged
        for key, value in merged.items():
            setattr(self, key, value)
        check_int_bounds(owner, merged)
        self.validate()

    def validate(self) -> None:
        """Check the merged parameters; raise :class:`ParameterError` on a bad one."""


def split_params(params: Mapping[str, Any] | None, names: Sequence[str], declared: Mapping[str, Mapping[str, Any]],
                 kind: str = "attacks") -> dict[str, dict[str, Any]]:
    """The one parameter path: the keyword parameters of each named component.

    ``params`` mixes global and per-component entries, as ``--param steps=10`` and
    ``--param ATTACK.steps=40`` do on the CLI: ``{"steps": 10, "ATTACK": {"steps": 40}}``. A
    global key goes to every component that declares it (``preset`` to every component
    that has that preset); a per-component entry overrides the globals for that one.

    Args:
        params: the mixed parameters (None for none).
        names: the selected components, in order.
        declared: each name's declared parameters (its ``defaults``), plus ``"preset"``
            mapping to its preset names when it has presets.
        kind: ``"attacks"`` or ``"defenses"``, for messages.

    Returns:
        ``{name: {key: value}}`` for every name (empty dicts included).

    Raises:
        ParameterError: a global key no selected component takes, or a per-component
            entry naming a component that is not selected.
    """
    params = dict(params or {})
    out: dict[str, dict[str, Any]] = {n: {} for n in names}
    for key, value in params.items():
        if isinstance(value, Mapping):
            if key not in out:
                raise ParameterError(f"parameters for '{key}' given, but '{key}' is not among the selected {kind}: "
                                     f"{', '.join(names)}")
            continue
        takers = [n for n in names if key in declared[n] and (key != "preset" or value in declared[n][key])]
        if not takers:
            raise ParameterError(f"parameter {key}={value!r} is taken by none of the selected {kind} "
                                 f"({', '.join(names)}): scope it as NAME.{key}=... or drop it")
        for n in takers:
            out[n][key] = value
    for key, value in params.items():
        if isinstance(value, Mapping):
            out[key].update(value)
    return out


def declared_params(component: Any) -> dict[str, Any]:
    """A component class's declared parameters for :func:`split_params` (defaults and presets)."""
    declared: dict[str, Any] = dict(getattr(component, "defaults", {}) or {})
    presets = getattr(component, "presets", {}) or {}
    if presets:
        declared["preset"] = tuple(presets)
    return declared
