"""The hooks a plugin implements (pluggy project name ``advframe``).

A plugin is a module named by an entry point of the group ``advframe``; it marks its
hook implementations with :data:`hookimpl`. advframe loads the built-in plugins first
(they ship in the ``advframe`` distribution), then third-party ones in entry-point
name order, each inside its own ``try``: a plugin that fails is reported by
``advframe plugins`` and everything else keeps working. A function marked
``@hookimpl`` whose name is not one of the hooks below is reported as that plugin's
error (``check_pending``), so a misspelt hook never loads silently.

A plugin may set a module attribute ``requires = ("gradient", ...)``: the entry-point
names of plugins it needs. When one is missing or broken, the plugin is reported with
one line naming it and none of its components is registered.
"""

from __future__ import annotations

from typing import Any

import pluggy

from advframe.registry import Registrar

PROJECT = "advframe"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["COMPONENT_HOOKS", "PROJECT", "Registrar", "hookimpl", "hookspec"]


@hookspec
def register_attacks(register: Registrar) -> None:
    """Register attacks.

    Called once per process, when the plugins are first loaded (the first call of
    :func:`advframe.plugins.host`: ``advframe list``, ``get_attack``, an evaluation...).

    Args:
        register: call ``register(MyAttack)`` for each :class:`advframe.Attack`
            subclass. The registrar checks the class: a snake_case ``name``, ``norms``
            among linf/l2, the traits the checks read (``targetable``,
            ``uses_true_label``, ``leaks_labels``, ``noise_baseline``,
            ``unbounded_probe``, ``black_box``, ``one_step_counterpart``,
            ``label_free_twin``) with their types, and a ``grid(self, model, x, y,
            threats, target, seeds)`` entry point. ``default=True`` declares the
            attack ``advframe eval`` runs when none is named.

    Returns:
        Nothing; a refused class is reported on this plugin and the others still register.
    """


@hookspec
def register_defenses(register: Registrar) -> None:
    """Register training procedures.

    Called once per process, when the plugins are first loaded.

    Args:
        register: call ``register(MyDefense)`` for each :class:`advframe.Defense`
            subclass (checked for ``training_loss`` and declared ``defaults``).

    Returns:
        Nothing.
    """


@hookspec
def register_models(register: Registrar) -> None:
    """Register model architectures.

    Called once per process, when the plugins are first loaded.

    Args:
        register: call ``register(factory, name="my_net")`` for each class or factory
            taking keyword constructor configuration; ``default=True`` declares the
            model ``advframe eval`` uses when none is named (a registered factory that
            loads shipped weights).

    Returns:
        Nothing.
    """


@hookspec
def register_datasets(register: Registrar) -> None:
    """Register data sets.

    Called once per process, when the plugins are first loaded.

    Args:
        register: call ``register(MyDataset)`` for each :class:`advframe.Dataset`
            class; ``default=True`` declares the data set used when none is named.

    Returns:
        Nothing.
    """


@hookspec
def register_suites(register: Registrar) -> None:
    """Register attack suites for worst-case evaluation (``advframe eval --suite NAME``).

    Called once per process, when the plugins are first loaded.

    Args:
        register: call ``register(advframe.Suite(name, attacks=((attack, params), ...)))``;
            the attacks run in the given order.

    Returns:
        Nothing.
    """


@hookspec
def register_checks(register: Registrar) -> None:
    """Register checkers: honesty checks run after an evaluation (``advframe eval``, :func:`advframe.checks.run_checks`).

    Called once per process, when the plugins are first loaded.

    Args:
        register: call ``register(checker)``; a checker has a ``name``, a tuple ``checks``
            of the check names it offers (unique across plugins) and
            ``run(model, data, result, only=names, **options) -> list[advframe.checks.Check]``.

    Returns:
        Nothing.
    """


@hookspec
def register_reports(register: Registrar) -> None:
    """Register report layouts: how ``advframe report`` reads another command's results documents.

    Called once per process, when the plugins are first loaded.

    Args:
        register: call ``register(layout)``; a layout has a ``name``, the ``schema`` string
            of the documents it reads, and ``problem(doc) -> str | None`` (what is wrong with
            a document), ``tables(evals, docs, eps) -> list[(title, header, rows)]`` and
            ``markdown(evals, docs, eps) -> str`` (``evals`` are the eval documents given
            beside them; ``eps`` the one the user chose, or None).

    Returns:
        Nothing.
    """


@hookspec
def register_commands(app: Any) -> None:
    """Add commands to the CLI.

    Called when the ``advframe`` command starts, after the built-in commands exist.

    Args:
        app: the Typer application; add commands with ``@app.command()``.

    Returns:
        Nothing; a hook that raises is reported on this plugin.
    """


COMPONENT_HOOKS: dict[str, str] = {
    "attacks": "register_attacks",
    "defenses": "register_defenses",
    "models": "register_models",
    "datasets": "register_datasets",
    "suites": "register_suites",
    "checks": "register_checks",
    "reports": "register_reports",
}

#: Every hook name, for reporting unknown ones.
ALL_HOOKS: tuple[str, ...] = (*COMPONENT_HOOKS.values(), "register_commands")
