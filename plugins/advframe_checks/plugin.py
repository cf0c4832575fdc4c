"""Hook implementations of the advframe_checks plugin."""

from __future__ import annotations

from typing import Any

import advframe
from advframe_checks.runner import HonestyChecks


@advframe.hookimpl
def register_checks(register: Any) -> None:
    """Register the ``honesty`` checker (the checks of docs/checks.md)."""
    register(HonestyChecks)
