"""Hook implementations of the advframe_checks plugin."""

from __future__ import annotations

import advframe
from advframe.hookspecs import Registrar
from advframe_checks.runner import HonestyChecks


@advframe.hookimpl
def register_checks(register: Registrar) -> None:
    """Register the ``honesty`` checker (the checks of docs/checks.md)."""
    register(HonestyChecks)
