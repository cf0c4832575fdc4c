"""Typed exceptions. Every message says what was wrong and how to fix it.

The CLI turns any :class:`AdvframeError` into one line on stderr and exit code 2.

A message that tells the user to set an option names it with a :class:`Hint` (the option and
the value it should take), not with a command-line flag: ``str(error)`` shows the hint as a
Python keyword (``limit=100``), the CLI as its flag (``--limit 100``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Hint:
    """An option the user should set, and the value it should take, in an error message.

    Attributes:
        option: the Python keyword (``limit``, ``model_param``); the CLI flag is ``--`` and
            the keyword with dashes (``--model-param``) unless ``flag`` names another.
        value: the value to give it; None names the option alone; True and False name an
            on/off flag (``--amp``, ``--no-amp`` on the CLI; ``amp=True`` in Python).
        flag: the CLI option, where it is not spelt like the keyword.
    """

    option: str
    value: Any = None
    flag: str | None = None

    def cli(self) -> str:
        """``--limit 100``, ``--resume``, ``--no-stop-on-collapse``, ``--model-param``."""
        flag = self.flag or "--" + self.option.replace("_", "-")
        if self.value is True or self.value is None:
            return flag
        if self.value is False:
            return "--no-" + flag[2:]
        return f"{flag} {self.value}"

    def python(self) -> str:
        """``limit=100``, ``resume=True``, ``config`` (no value)."""
        return self.option if self.value is None else f"{self.option}={self.value}"


class AdvframeError(Exception):
    """Base class of every error advframe raises for a user's mistake.

    Args:
        message: what was wrong and how to fix it; ``{option}`` marks where a hint's option
            goes (a hint without a mark is added at the end, ``: use limit=100``).
        hint: the option(s) the fix names, in the order of their marks (a hint fills the
            first mark of its option still open, the last hint of an option every one left).
    """

    def __init__(self, *args: Any, hint: Hint | Iterable[Hint] = ()):
        super().__init__(*args)
        self.hints: tuple[Hint, ...] = (hint,) if isinstance(hint, Hint) else tuple(hint)

    def render(self, cli: bool = False) -> str:
        """The message with each hint shown as a CLI flag (``cli``) or as a Python keyword."""
        text = str(self.args[0]) if len(self.args) == 1 else Exception.__str__(self)
        for i, h in enumerate(self.hints):
            shown, mark = h.cli() if cli else h.python(), "{" + h.option + "}"
            last = all(later.option != h.option for later in self.hints[i + 1:])
            if mark in text:
                text = text.replace(mark, shown, -1 if last else 1)
            else:
                text += f": use {shown}"
        return text

    def __str__(self) -> str:  # Python callers read the hints as keywords; KeyError would quote the message
        return self.render()


class UnknownNameError(AdvframeError, KeyError):
    """A component name that no plugin registered."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'?" if close else f"known {kind}: {', '.join(known) or '(none)'}"
        super().__init__(f"unknown {kind[:-1] if kind.endswith('s') else kind} '{name}': {hint} "
                         f"(run 'advframe list {kind}')")
        self.kind, self.name, self.suggestion = kind, name, (close[0] if close else None)


class ThreatModelError(AdvframeError, ValueError):
    """An invalid threat model (eps, norm or bounds)."""


class DataError(AdvframeError, ValueError):
    """Input data that cannot be used: missing files, NaN, values outside the bounds."""


class CheckpointError(AdvframeError, ValueError):
    """A checkpoint that is missing, corrupt, not safetensors, or lacks metadata."""


class PluginError(AdvframeError, RuntimeError):
    """A plugin that failed to load or register (raised only in strict mode)."""


class ParameterError(AdvframeError, ValueError):
    """A hyper-parameter that a component does not accept or cannot use."""


class ThreatViolation(AdvframeError, RuntimeError):
    """An adversarial batch that leaves the threat model (raised only when asked to)."""


class DistributedError(AdvframeError, RuntimeError):
    """A process group that cannot be formed (missing torchrun variables, bad --devices)."""
