"""The hooks a plugin implements (pluggy project name ``advframe``).

Each ``register_*`` hook is handed a registrar; ``register(Component)`` adds a class
or factory under its ``name`` (keywords ``name=`` and ``aliases=`` override).
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

PROJECT = "advframe"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Registrar = Callable[..., Any]


@hookspec
def register_attacks(register: Registrar) -> None:
    """Register Attack classes: ``register(MyAttack)``."""


@hookspec
def register_defenses(register: Registrar) -> None:
    """Register Defense classes."""


@hookspec
def register_models(register: Registrar) -> None:
    """Register Model classes or factories (keyword constructor config)."""


@hookspec
def register_datasets(register: Registrar) -> None:
    """Register Dataset classes."""


@hookspec
def register_commands(app: Any) -> None:
    """Add commands to the Typer ``app`` of the CLI."""


COMPONENT_HOOKS: dict[str, str] = {
    "attacks": "register_attacks",
    "defenses": "register_defenses",
    "models": "register_models",
    "datasets": "register_datasets",
}
