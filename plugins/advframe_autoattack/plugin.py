"""Hook implementations of the advframe_autoattack plugin.

The attacks import their losses from the ``gradient`` plugin (``advframe_gradient``),
declared in ``requires``: without it, this plugin is reported with one line naming it
and registers nothing.
"""

from __future__ import annotations

import advframe
from advframe.hookspecs import Registrar

#: Plugins this one needs: the DLR and margin losses live in the gradient plugin.
requires = ("gradient",)


@advframe.hookimpl
def register_attacks(register: Registrar) -> None:
    """Register ``apgd_ce``, ``apgd_dlr``, ``apgd_t``, ``fab_t`` and ``square``."""
    from advframe_autoattack.apgd_attacks import APGDCE, APGDDLR, APGDT
    from advframe_autoattack.fab import FABT
    from advframe_autoattack.square import Square

    for attack in (APGDCE, APGDDLR, APGDT, FABT, Square):
        register(attack)


@advframe.hookimpl
def register_suites(register: Registrar) -> None:
    """Register the ``autoattack`` and ``autoattack_fast`` suites (Croce & Hein 2020)."""
    from advframe_autoattack.suites import SUITES, SUMMARIES

    for name, attacks in SUITES.items():
        register(advframe.Suite(name, tuple((a, dict(p)) for a, p in attacks), SUMMARIES[name]))
