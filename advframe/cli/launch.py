"""``--devices N``: re-run the current command on N local processes (torchrun-style)."""

from __future__ import annotations

from enum import Enum
from typing import Any

from advframe import distributed


def relaunch_argv(ctx: Any, drop: tuple[str, ...] = ("devices",)) -> list[str]:
    """The command line of the running command, from the options the user gave.

    Options left at their defaults are not repeated; ``drop`` names options to leave out.
    """
    args = [ctx.info_name]
    for param in ctx.command.params:
        if param.name in drop or param.param_type_name != "option":
            continue
        source = ctx.get_parameter_source(param.name)
        if source is None or source.name in ("DEFAULT", "DEFAULT_MAP"):
            continue
        value = ctx.params.get(param.name)
        if param.is_flag:
            if param.secondary_opts:
                args.append(param.opts[0] if value else param.secondary_opts[0])
            elif value:
                args.append(param.opts[0])
        elif param.multiple:
            for v in value or ():
                args += [param.opts[0], _text(v)]
        elif value is not None:
            args += [param.opts[0], _text(value)]
    return args


def _text(value: Any) -> str:
    return str(value.value) if isinstance(value, Enum) else str(value)


def maybe_launch(ctx: Any, devices: int) -> int | None:
    """Start ``devices`` processes running this command, unless already inside a group.

    Returns:
        The exit status of the launched processes, or ``None`` when this process should
        run the command itself (one device, or already started by torchrun / a launcher).
    """
    if devices < 1:
        from advframe.errors import ParameterError

        raise ParameterError(f"--devices {devices} is invalid: use a positive number of processes")
    if devices == 1 or distributed.launched_world() > 1:
        return None
    return distributed.launch(relaunch_argv(ctx), devices)
