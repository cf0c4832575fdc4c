"""Hook implementations of the advframe_autoattack plugin.

The attacks import their losses from the ``gradient`` plugin (``advframe_gradient``);
without it, registration fails with one line saying so.
"""

from __future__ import annotations

import importlib

import advframe
from advframe.errors import PluginError


def _require_gradient_plugin() -> None:
    try:
        importlib.import_module("advframe_gradient.losses")
    except ImportError as exc:
        raise PluginError("plugin 'autoattack' needs the plugin 'gradient' (package advframe_gradient, which "
                          f"owns the DLR and margin losses), which is missing: {exc}") from None


@advframe.hookimpl
def register_attacks(register):
    """Register ``apgd_ce``, ``apgd_dlr``, ``apgd_t``, ``fab_t`` and ``square``."""
    _require_gradient_plugin()
    from advframe_autoattack.apgd_attacks import APGDCE, APGDDLR, APGDT
    from advframe_autoattack.fab import FABT
    from advframe_autoattack.square import Square

    for attack in (APGDCE, APGDDLR, APGDT, FABT, Square):
        register(attack)
