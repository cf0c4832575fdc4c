"""Hook implementations of the advframe_transfer plugin."""

from __future__ import annotations

from typing import Any

import advframe
from advframe.hookspecs import Registrar
from advframe_transfer.report import TransferReport


@advframe.hookimpl
def register_reports(register: Registrar) -> None:
    """Register the report layout for ``advframe.transfer/1`` documents."""
    register(TransferReport)


@advframe.hookimpl
def register_commands(app: Any) -> None:
    """Add ``advframe transfer`` (typer is imported only here, by the CLI)."""
    from advframe_transfer.cli import transfer_command

    app.command("transfer")(transfer_command)
