"""Typed exceptions. Every message says what was wrong and how to fix it.

The CLI turns any :class:`AdvframeError` into one line on stderr and exit code 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AdvframeError(Exception):
    """Base class of every error advframe raises for a user's mistake."""


class UnknownNameError(AdvframeError, KeyError):
    """A component name that no plugin registered."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'?" if close else f"known {kind}: {', '.join(known) or '(none)'}"
        super().__init__(f"unknown {kind[:-1] if kind.endswith('s') else kind} '{name}': {hint} "
                         f"(run 'advframe list {kind}')")
        self.kind, self.name, self.suggestion = kind, name, (close[0] if close else None)

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


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
