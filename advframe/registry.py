"""Name -> component, remembering the plugin and distribution each came from.

Each plugin hook gets a typed registrar (:class:`Registrar`) that checks a component
when it is registered: its name, the traits it declares and its call signature. A
component that fails the check, or whose name another plugin already took, is refused
and reported on its own plugin; the rest of that plugin's hook still registers.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from advframe.errors import AdvframeError, ParameterError, UnknownNameError

KINDS: tuple[str, ...] = ("attacks", "defenses", "models", "datasets", "suites", "checks", "reports")
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
NORMS = ("linf", "l2")
#: Traits of attacks the checks read, with the types they must have.
ATTACK_TRAITS: dict[str, tuple[type, ...]] = {
    "targetable": (bool,), "uses_true_label": (bool,), "leaks_labels": (bool,), "noise_baseline": (bool,),
    "unbounded_probe": (bool,), "black_box": (bool,), "one_step_counterpart": (str, type(None)),
    "label_free_twin": (str, type(None)),
}


class RegistrationError(AdvframeError):
    """A component a plugin tried to register that does not meet its kind's contract."""


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

    def trait(self, name: str, default: Any = None) -> Any:
        """A trait the component declares (a class attribute), or ``default``."""
        return getattr(self.factory, name, default)

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable description, with the component's declared traits."""
        d: dict[str, Any] = {"kind": self.kind, "name": self.name, "plugin": self.plugin,
                             "distribution": self.distribution, "version": self.version,
                             "summary": self.summary, "aliases": list(self.aliases)}
        if self.kind == "attacks":
            d["norms"] = list(self.trait("norms", ()))
            d.update({t: self.trait(t) for t in ATTACK_TRAITS})
        return d


def _summary(component: Any) -> str:
    text = getattr(component, "summary", "") or inspect.getdoc(component) or ""
    return text.strip().splitlines()[0] if text.strip() else ""


def _check_params(component: Any) -> None:
    defaults = getattr(component, "defaults", {})
    if not isinstance(defaults, dict) or not all(isinstance(k, str) for k in defaults):
        raise RegistrationError("its 'defaults' must be a dict of parameter names to default values")


def check_attack(component: Any) -> None:
    """The contract of an attack class: norms, traits of the right types, grid()."""
    norms = getattr(component, "norms", None)
    if not isinstance(norms, tuple) or not norms or any(n not in NORMS for n in norms):
        raise RegistrationError(f"its 'norms' must be a non-empty tuple of {', '.join(NORMS)}, got {norms!r}")
    for trait, types in ATTACK_TRAITS.items():
        value = getattr(component, trait, None)
        if not isinstance(value, types):
            kinds = " or ".join("None" if t is type(None) else t.__name__ for t in types)
            raise RegistrationError(f"its trait '{trait}' must be {kinds}, got {value!r}")
    for method in ("grid", "check_threat"):
        if not callable(getattr(component, method, None)):
            raise RegistrationError(f"it has no {method}() method: subclass advframe.Attack")
    params = list(inspect.signature(component.grid).parameters)
    if params[:6] != ["self", "model", "x", "y", "threats", "target"]:
        raise RegistrationError(f"its grid() takes ({', '.join(params)}), not (self, model, x, y, threats, "
                                f"target, seeds)")
    _check_params(component)


def check_defense(component: Any) -> None:
    """The contract of a defense class: training_loss() and declared parameters."""
    if not callable(getattr(component, "training_loss", None)):
        raise RegistrationError("it has no training_loss() method: subclass advframe.Defense")
    _check_params(component)


def check_factory(component: Any) -> None:
    """Models and data sets: a class or factory called with keyword configuration."""
    if not callable(component):
        raise RegistrationError(f"it is a {type(component).__name__}, not a class or factory")


def check_suite(component: Any) -> None:
    """A suite: an ordered, non-empty list of ``(attack name, params)`` pairs."""
    attacks = getattr(component, "attacks", None)
    if not isinstance(attacks, tuple) or not attacks or not all(
            isinstance(a, tuple) and len(a) == 2 and isinstance(a[0], str) and isinstance(a[1], dict)
            for a in attacks):
        raise RegistrationError("its 'attacks' must be a non-empty tuple of (attack name, params dict) pairs")


def check_checker(component: Any) -> None:
    """A checker: the names of the checks it offers, and run()."""
    names = getattr(component, "checks", None)
    if not isinstance(names, tuple) or not names or not all(isinstance(n, str) and NAME.match(n) for n in names):
        raise RegistrationError("its 'checks' must be a non-empty tuple of snake_case check names")
    if not callable(getattr(component, "run", None)):
        raise RegistrationError("it has no run(model, data, result, **options) method")


def check_report(component: Any) -> None:
    """A report layout: the document schema it reads, problem(), tables() and markdown()."""
    if not isinstance(getattr(component, "schema", None), str):
        raise RegistrationError("its 'schema' must be the string of the document schema it reads")
    for method in ("problem", "tables", "markdown"):
        if not callable(getattr(component, method, None)):
            raise RegistrationError(f"it has no {method}() method")


CHECKS: dict[str, Callable[[Any], None]] = {"attacks": check_attack, "defenses": check_defense,
                                            "models": check_factory, "datasets": check_factory,
                                            "suites": check_suite, "checks": check_checker,
                                            "reports": check_report}


@dataclass
class Registrar:
    """What a plugin's ``register_*`` hook is handed: ``register(Component)``.

    Call it as ``register(component, name=None, aliases=None, summary=None,
    default=False)``; ``default=True`` declares the component the one used when the
    user names none, ``default="train"`` the one for a named use such as training
    (the first declared default of a kind and use wins; built-ins load first).
    A refused component is reported through ``on_error`` and not registered; the call
    returns ``None`` then, else the component.
    """

    registry: "Registry"
    kind: str
    plugin: str
    distribution: str
    version: str
    on_error: Callable[[str], None]

    def __call__(self, component: Any, name: str | None = None, aliases: tuple[str, ...] | list[str] | None = None,
                 summary: str | None = None, default: bool | str = False) -> Any:
        key = name or getattr(component, "name", None)
        try:
            if not isinstance(key, str) or not NAME.match(key):
                raise RegistrationError(f"its name {key!r} is not snake_case (a-z, 0-9, _)")
            als = tuple(aliases if aliases is not None else getattr(component, "aliases", ()))
            for a in (key, *als):
                prev = self.registry.owner(self.kind, a)
                if prev is not None:
                    raise RegistrationError(f"the name '{a}' is already taken by plugin '{prev.plugin}' "
                                            f"({prev.distribution})")
            CHECKS[self.kind](component)
            if self.kind == "checks":
                offered = {c: e.plugin for e in self.registry.entries["checks"].values() for c in e.factory.checks}
                taken = [c for c in component.checks if c in offered]
                if taken:
                    raise RegistrationError(f"the check '{taken[0]}' is already offered by plugin '{offered[taken[0]]}'")
        except RegistrationError as exc:
            self.on_error(f"{self.kind[:-1]} {key!r} refused: {exc}")
            return None
        entry = Entry(self.kind, key, component, self.plugin, self.distribution, self.version,
                      summary or _summary(component), als)
        self.registry.add(entry, "" if default is True else (default or None))
        return component


@dataclass
class Registry:
    """Components by kind and name (aliases resolve to the same entry)."""

    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {k: {} for k in KINDS})
    aliases: dict[str, dict[str, str]] = field(default_factory=lambda: {k: {} for k in KINDS})
    defaults: dict[tuple[str, str], str] = field(default_factory=dict)

    def registrar(self, kind: str, plugin: str, distribution: str, version: str,
                  on_error: Callable[[str], None]) -> Registrar:
        """A typed registrar for one plugin's hook of ``kind``."""
        return Registrar(self, kind, plugin, distribution, version, on_error)

    def owner(self, kind: str, name: str) -> Entry | None:
        """The entry holding ``name`` (a name or an alias) of ``kind``, if any."""
        key = self.aliases[kind].get(name, name)
        return self.entries[kind].get(key)

    def add(self, entry: Entry, default: str | None = None) -> None:
        """Add a checked entry; ``default`` names the use it is the default for ("" = general)."""
        self.entries[entry.kind][entry.name] = entry
        for a in entry.aliases:
            self.aliases[entry.kind][a] = entry.name
        if default is not None:
            self.defaults.setdefault((entry.kind, default), entry.name)

    def remove_plugin(self, plugin: str) -> None:
        """Drop every component a plugin registered (it turned out unusable)."""
        for kind in KINDS:
            for name in [n for n, e in self.entries[kind].items() if e.plugin == plugin]:
                del self.entries[kind][name]
                self.aliases[kind] = {a: n for a, n in self.aliases[kind].items() if n != name}
                self.defaults = {k: v for k, v in self.defaults.items() if not (k[0] == kind and v == name)}

    def get(self, kind: str, name: str) -> Entry:
        """The entry for ``name`` (or an alias).

        Raises:
            UnknownNameError: with the closest known name.
        """
        entry = self.owner(kind, name)
        if entry is None:
            raise UnknownNameError(kind, name, list(self.entries[kind]) + list(self.aliases[kind]))
        return entry

    def default(self, kind: str, use: str = "") -> str | None:
        """The name a plugin declared as the default of ``kind`` (for ``use``), if any."""
        return self.defaults.get((kind, use))

    def names(self, kind: str) -> list[str]:
        """Sorted names of one kind."""
        return sorted(self.entries[kind])

    def with_trait(self, kind: str, trait: str, value: Any = True) -> list[Entry]:
        """Entries whose ``trait`` equals ``value``, in registration order (built-ins first)."""
        return [e for e in self.entries[kind].values() if e.trait(trait) == value]

    def family(self, spec: str | None) -> tuple[str, dict[str, Any]] | None:
        """``(model, config)`` when ``spec`` reads ``FAMILY:NAME`` for a registered model family, else None.

        A registered model factory that declares ``family_parameter = "name"`` builds a whole
        family of networks by name: ``--arch timm:inception_v3`` is the registered model
        ``timm`` with ``name="inception_v3"``. It is built like any registered model (no import
        of a path), and a checkpoint of it records ``model: "timm"`` and the name in its config.

        Raises:
            ParameterError: ``FAMILY:`` with no name after it.
        """
        if not isinstance(spec, str) or ":" not in spec:
            return None
        family, _, member = spec.partition(":")
        if family not in self.names("models"):
            return None
        parameter = getattr(self.get("models", family).factory, "family_parameter", None)
        if not isinstance(parameter, str):
            return None
        if not member.strip():
            raise ParameterError(f"--arch '{spec}' names no member of the model family '{family}': "
                                 f"write {family}:NAME")
        return family, {parameter: member.strip()}

    def build(self, kind: str, name: str, /, **params: Any) -> Any:
        """Construct a component; models remember their name and config for checkpoints."""
        entry = self.get(kind, name)
        obj = entry.factory(**params)
        if kind == "models":
            obj._advframe_name = entry.name
            obj._advframe_config = dict(params)
        return obj
