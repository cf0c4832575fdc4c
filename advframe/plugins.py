"""Plugin discovery through the entry-point group ``advframe`` (pluggy).

Plugins are loaded one by one: a plugin that fails to import, or whose hook raises, is
recorded (shown by ``advframe plugins``), logged once on stderr, and everything else
keeps working. ``ADVFRAME_STRICT_PLUGINS=1`` turns such a failure into an error.
"""

from __future__ import annotations

import difflib
import logging
import os
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from advframe import hookspecs
from advframe.errors import PluginError
from advframe.registry import Registry

GROUP = "advframe"
#: The distribution whose entry points are the built-in plugins (loaded first).
BUILTIN_DISTRIBUTION = "advframe"
log = logging.getLogger("advframe.plugins")


@dataclass
class PluginInfo:
    """What is known about one plugin."""

    name: str
    module: str
    distribution: str
    version: str
    status: str = "ok"  # "ok" or "error"
    errors: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable description."""
        return {"name": self.name, "module": self.module, "distribution": self.distribution,
                "version": self.version, "status": self.status, "errors": list(self.errors),
                "hooks": list(self.hooks)}


def _strict() -> bool:
    return os.environ.get("ADVFRAME_STRICT_PLUGINS", "").strip().lower() in ("1", "true", "yes")


def _one_line(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


class PluginHost:
    """A pluggy manager plus the registry its plugins fill."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.plugins: dict[str, PluginInfo] = {}
        self._modules: dict[str, Any] = {}

    def _fail(self, info: PluginInfo, what: str, exc: BaseException) -> None:
        info.status = "error"
        message = f"{what}: {_one_line(exc)}"
        info.errors.append(message)
        if _strict():
            raise PluginError(f"plugin '{info.name}' ({info.distribution}) failed, {message} "
                              f"(unset ADVFRAME_STRICT_PLUGINS to skip broken plugins)") from exc
        log.warning("advframe: plugin '%s' (%s) skipped, %s", info.name, info.distribution, message)

    def add(self, plugin: Any, name: str, distribution: str = "(local)", version: str = "",
            module: str | None = None) -> PluginInfo:
        """Register one plugin object (a module or any object with hook implementations)."""
        info = PluginInfo(name, module or getattr(plugin, "__name__", type(plugin).__name__), distribution, version)
        self.plugins[name] = info
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # a malformed hookimpl
            self._fail(info, "register", exc)
            return info
        self._modules[name] = plugin
        info.hooks = sorted(hook for hook, _ in self._impls(name))
        try:
            self.pm.check_pending()  # earlier plugins passed it, so a failure is this one's
        except pluggy.PluginValidationError:
            self._unknown_hooks(info, [h for h in info.hooks if h not in hookspecs.ALL_HOOKS])
            return info
        for kind, hook in hookspecs.COMPONENT_HOOKS.items():
            for hook_name, impl in self._impls(name):
                if hook_name != hook:
                    continue
                register = self.registry.registrar(kind, name, distribution, version,
                                                   lambda message, i=info, h=hook: self._refuse(i, h, message))
                try:
                    impl.function(register=register)
                except Exception as exc:
                    self._fail(info, hook, exc)
        return info

    def _unknown_hooks(self, info: PluginInfo, unknown: list[str]) -> None:
        """Report hooks that no spec declares (pluggy's check_pending) and drop the plugin."""
        hints = []
        for h in unknown:
            close = difflib.get_close_matches(h, hookspecs.ALL_HOOKS, n=1)
            hints.append(f"'{h}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        self.pm.unregister(name=info.name)
        self._modules.pop(info.name, None)
        self._fail(info, "hooks", PluginError(f"unknown hook {', '.join(hints)}: advframe hooks are "
                                              f"{', '.join(hookspecs.ALL_HOOKS)}"))

    def _refuse(self, info: PluginInfo, hook: str, message: str) -> None:
        """A component refused by its registrar: an error of its plugin, the hook goes on."""
        info.status = "error"
        info.errors.append(f"{hook}: {message}")
        if _strict():
            raise PluginError(f"plugin '{info.name}' ({info.distribution}): {message} "
                              f"(unset ADVFRAME_STRICT_PLUGINS to skip refused components)")
        log.warning("advframe: plugin '%s' (%s): %s", info.name, info.distribution, message)

    def check_requirements(self) -> None:
        """Drop plugins whose declared ``requires`` are missing or broken, with one line each."""
        changed = True
        while changed:
            changed = False
            for name, module in list(self._modules.items()):
                missing = [r for r in getattr(module, "requires", ()) if r not in self._modules]
                if missing:
                    self.registry.remove_plugin(name)
                    self.pm.unregister(name=name)
                    del self._modules[name]
                    self._fail(self.plugins[name], "requires", PluginError(
                        f"needs plugin {', '.join(repr(m) for m in missing)}, which is not installed or failed "
                        f"to load; install it (pip install the distribution that provides it)"))
                    changed = True

    def _impls(self, name: str) -> list[tuple[str, Any]]:
        """``(hook name, hookimpl)`` pairs of one registered plugin."""
        plugin = self._modules.get(name)
        if plugin is None:
            return []
        return [(caller.name, impl) for caller in (self.pm.get_hookcallers(plugin) or [])
                for impl in caller.get_hookimpls() if impl.plugin is plugin]

    def load_entry_points(self) -> None:
        """Import every entry point of the group ``advframe``, one by one.

        The built-in plugins (those of the ``advframe`` distribution) load first, so a
        third-party plugin can never take a built-in name; then the others by name.
        """
        def order(ep: Any) -> tuple[bool, str]:
            dist = getattr(ep, "dist", None)
            return (dist is None or dist.metadata["Name"] != BUILTIN_DISTRIBUTION, ep.name)

        for ep in sorted(metadata.entry_points(group=GROUP), key=order):
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else "(unknown)"
            version = dist.version if dist is not None else ""
            if ep.name in self.plugins:
                continue  # the same distribution seen twice on sys.path
            try:
                module = ep.load()
            except Exception as exc:
                info = PluginInfo(ep.name, ep.value, dist_name, version)
                self.plugins[ep.name] = info
                self._fail(info, "import", exc)
                continue
            self.add(module, ep.name, dist_name, version, module=ep.value)
        self.check_requirements()

    def commands(self, app: Any) -> None:
        """Let each plugin add CLI commands; a failing plugin is recorded, not fatal."""
        for name, plugin in self._modules.items():
            for hook_name, impl in self._impls(name):
                if hook_name == "register_commands":
                    try:
                        impl.function(app=app)
                    except Exception as exc:
                        self._fail(self.plugins[name], "register_commands", exc)


_HOST: PluginHost | None = None


def host() -> PluginHost:
    """The process-wide plugin host, loading entry points on first use."""
    global _HOST
    if _HOST is None:
        from advframe import __version__, builtin

        h = PluginHost()
        _HOST = h
        try:
            h.add(builtin, "builtin", "advframe", __version__)
            h.load_entry_points()
        except BaseException:
            _HOST = None
            raise
    return _HOST


def reset() -> None:
    """Forget loaded plugins (the next :func:`host` call rediscovers them)."""
    global _HOST
    _HOST = None


def registry() -> Registry:
    """The registry filled by all loaded plugins."""
    return host().registry
