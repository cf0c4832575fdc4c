"""Name -> component, remembering the plugin and distribution each came from."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from advframe.errors import AdvframeError, UnknownNameError

KINDS: tuple[str, ...] = ("attacks", "defenses", "models", "datasets")


@dataclass(frozen=True)
class Entry:
    """One registered component."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    distribution: str
    version: str
    summary: str
    aliases: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable description, with the component's declared traits."""
        d: dict[str, Any] = {"kind": self.kind, "name": self.name, "plugin": self.plugin,
                             "distribution": self.distribution, "version": self.version,
                             "summary": self.summary, "aliases": list(self.aliases)}
        for trait in ("norms", "targetable", "uses_true_label"):
            if hasattr(self.factory, trait):
                value = getattr(self.factory, trait)
                d[trait] = list(value) if isinstance(value, tuple) else value
        return d


def _summary(component: Any) -> str:
    text = getattr(component, "summary", "") or inspect.getdoc(component) or ""
    return text.strip().splitlines()[0] if text.strip() else ""


@dataclass
class Registry:
    """Components by kind and name (aliases resolve to the same entry)."""

    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {k: {} for k in KINDS})
    aliases: dict[str, dict[str, str]] = field(default_factory=lambda: {k: {} for k in KINDS})

    def registrar(self, kind: str, plugin: str, distribution: str, version: str) -> Callable[..., Any]:
        """A ``register(component, name=None, aliases=())`` function for one plugin's hook."""

        def register(component: Any, name: str | None = None, aliases: tuple[str, ...] | list[str] | None = None,
                     summary: str | None = None) -> Any:
            key = name or getattr(component, "name", None)
            if not key or not isinstance(key, str):
                raise AdvframeError(f"plugin '{plugin}' registered a {kind[:-1]} without a name")
            if key in self.entries[kind] or key in self.aliases[kind]:
                prev = self.entries[kind].get(key) or self.entries[kind][self.aliases[kind][key]]
                raise AdvframeError(f"plugin '{plugin}' registers {kind[:-1]} '{key}', which plugin "
                                    f"'{prev.plugin}' already registered")
            als = tuple(aliases if aliases is not None else getattr(component, "aliases", ()))
            entry = Entry(kind, key, component, plugin, distribution, version, summary or _summary(component), als)
            self.entries[kind][key] = entry
            for a in als:
                self.aliases[kind][a] = key
            return component

        return register

    def get(self, kind: str, name: str) -> Entry:
        """The entry for ``name`` (or an alias).

        Raises:
            UnknownNameError: with the closest known name.
        """
        table = self.entries[kind]
        key = self.aliases[kind].get(name, name)
        if key not in table:
            raise UnknownNameError(kind, name, list(table) + list(self.aliases[kind]))
        return table[key]

    def names(self, kind: str) -> list[str]:
        """Sorted names of one kind."""
        return sorted(self.entries[kind])

    def build(self, kind: str, name: str, **params: Any) -> Any:
        """Construct a component; models remember their name and config for checkpoints."""
        entry = self.get(kind, name)
        obj = entry.factory(**params)
        if kind == "models":
            obj._advframe_name = entry.name
            obj._advframe_config = dict(params)
        return obj
