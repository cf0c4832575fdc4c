"""The command-line interface (Typer + rich). The only part of advframe that prints."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the CLI, turning user errors into one line and exit 2."""
    import typer

    try:  # typer >= 0.20 vendors click as typer._click; older releases use click itself
        from typer._click import exceptions as cx
    except ImportError:  # pragma: no cover - depends on the installed typer
        from click import exceptions as cx

    from advframe.cli.app import build_app, name_defaults
    from advframe.errors import AdvframeError

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        command = typer.main.get_command(build_app())
        name_defaults(command)
        code = command.main(args=args, prog_name="advframe", standalone_mode=False)
    except cx.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare 'advframe': the help is already printed
            raise SystemExit(0) from None
        path = exc.ctx.command_path if exc.ctx is not None else "advframe"
        hint = f" (see '{path} --help')"
        message = " ".join(exc.format_message().split())
        given = _given_value(args, getattr(exc, "param", None))
        if given is not None and given not in message:
            message += f" (got {given!r})"
        sys.stderr.write(f"error: {message}{hint}\n")
        raise SystemExit(2) from None
    except AdvframeError as exc:
        sys.stderr.write(f"error: {exc.render(cli=True)}\n")  # hints as flags: --limit 100
        raise SystemExit(2) from None
    except (typer.Abort, KeyboardInterrupt):  # typer's own classes: newer releases no longer alias click's
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    raise SystemExit(code if isinstance(code, int) else 0)


def _given_value(args: list[str], param: object) -> str | None:
    """The last value given on the command line for option ``param`` (``--opt V`` or ``--opt=V``)."""
    opts = [o for o in getattr(param, "opts", []) if o.startswith("-")]
    value = None
    for i, arg in enumerate(args):
        for opt in opts:
            if arg == opt and i + 1 < len(args):
                value = args[i + 1]
            elif arg.startswith(opt + "="):
                value = arg[len(opt) + 1:]
    return value
