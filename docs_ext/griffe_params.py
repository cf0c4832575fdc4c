"""Griffe extension for the API pages: a component's ``defaults`` become its documented signature.

Attacks and defenses (:class:`advframe.params.Configurable`) take their hyper-parameters
as ``**params`` checked against the class attribute ``defaults``. Read statically, their
``Args:`` sections name no signature parameter, so mkdocstrings shows every one as
"required" with no type. This extension imports each such class, reads its (inherited,
merged) ``defaults`` and gives it a keyword-only ``__init__`` whose parameters carry those
defaults and their types: the type of the default, ``T | None`` for a ``None`` default
that a preset sets to a ``T``. A type written in the docstring (``seed (int | None): ...``)
wins, as griffe reads it first.

Enabled in ``mkdocs.yml`` under the python handler's ``extensions``.
"""

from __future__ import annotations

import importlib
from typing import Any

import griffe

_TYPES = (bool, int, float, str, tuple, list, dict)


def _type_name(value: Any) -> str | None:
    for t in _TYPES:  # bool before int: True is an int too
        if isinstance(value, t):
            return t.__name__
    return None


def annotation(key: str, default: Any, presets: dict[str, dict[str, Any]]) -> str | None:
    """The documented type of parameter ``key``: its default's type, or ``T | None`` from the presets."""
    if default is not None:
        return _type_name(default)
    seen = {_type_name(p[key]) for p in presets.values() if p.get(key) is not None}
    seen.discard(None)
    if seen == {"int", "float"}:
        seen = {"float"}
    return f"{seen.pop()} | None" if len(seen) == 1 else None


def _runtime_class(cls: griffe.Class) -> Any:
    try:
        module = importlib.import_module(cls.module.path)
    except Exception:  # noqa: BLE001 - a module that cannot be imported is documented as it is
        return None
    obj: Any = module
    for part in cls.path[len(cls.module.path) + 1:].split("."):
        obj = getattr(obj, part, None)
    return obj


class ConfigurableParams(griffe.Extension):
    """Give each Configurable class with ``defaults`` a typed keyword-only ``__init__``."""

    def on_class(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        """Add the ``__init__`` after the tree is built.

        A class's own ``__init__`` is kept unless it only takes ``**params``.
        """
        own = cls.members.get("__init__")
        if own is not None and any(p.name != "self" and p.kind is not griffe.ParameterKind.var_keyword
                                   for p in getattr(own, "parameters", [])):
            return
        if "defaults" not in cls.all_members:
            return
        obj = _runtime_class(cls)
        from advframe.params import Configurable

        if not (isinstance(obj, type) and issubclass(obj, Configurable)) or not obj.defaults:
            return
        presets = dict(getattr(obj, "presets", None) or {})
        params = [griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)]
        for key, default in obj.defaults.items():
            params.append(griffe.Parameter(key, kind=griffe.ParameterKind.keyword_only,
                                           annotation=annotation(key, default, presets), default=repr(default)))
        init = griffe.Function("__init__", parameters=griffe.Parameters(*params), returns="None",
                               lineno=cls.lineno, endlineno=cls.lineno)
        cls.set_member("__init__", init)
