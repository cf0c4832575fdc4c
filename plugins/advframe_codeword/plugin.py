"""Hook implementations of the advframe_codeword plugin (Saito & Roy)."""

from __future__ import annotations

from typing import Any

import advframe
from advframe.hookspecs import Registrar
from advframe_codeword.heads import CodewordModel


@advframe.hookimpl
def register_models(register: Registrar) -> None:
    """Register the ``codeword`` model wrapper (O:SOFTMAX:CE, O:SOFTMAX:MSE, R:TANH:MSE heads)."""
    register(CodewordModel)


@advframe.hookimpl
def register_commands(app: Any) -> None:
    """Add ``advframe lipschitz`` (typer is imported only here, by the CLI)."""
    from advframe_codeword.cli import lipschitz_command

    app.command("lipschitz")(lipschitz_command)
