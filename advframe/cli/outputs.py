"""Checks of the files a command will write, made before any work starts.

A results file named on the command line must be a regular file (or not exist yet) in
an existing folder: an hour of attacks should not end in "is a directory", and, run as
root, ``--output /dev/null`` must not replace the device node with a JSON file (the
writes are atomic renames, which replace whatever the name pointed to).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from advframe.errors import ParameterError


def check_output_path(path: str | os.PathLike[str] | None, option: str) -> Path | None:
    """Refuse an output path that is a folder, not a regular file, or in a missing folder.

    Args:
        path: the path the user gave (None: the option was not given, nothing to check).
        option: the option's name for the message, e.g. ``"--output"``.

    Returns:
        The path as a :class:`Path` (None when ``path`` is None).

    Raises:
        ParameterError: naming the option, the path and what to do instead.
    """
    if path is None:
        return None
    p = Path(path)
    if str(path) == "":
        raise ParameterError(f"{option} is empty: pass a file name")
    try:
        st = os.stat(p)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise ParameterError(f"{option} '{p}' cannot be used ({exc.strerror}): pass another file name") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise ParameterError(f"{option} '{p}' is a folder: pass a file name inside it")
        if not stat.S_ISREG(st.st_mode):
            raise ParameterError(f"{option} '{p}' is not a regular file (a device, pipe or socket): "
                                 f"pass the name of a file to write")
        if not os.access(p, os.W_OK):
            raise ParameterError(f"{option} '{p}' is not writable: pass another file name")
        return p
    parent = p.parent
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        raise ParameterError(f"{option} '{p}': its folder '{parent}' {what}: create it first or pass another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ParameterError(f"{option} '{p}': its folder '{parent}' is not writable: pass another path")
    return p


def check_output_paths(*pairs: tuple[str | os.PathLike[str] | None, str]) -> None:
    """:func:`check_output_path` for each ``(path, option)``; refuse the same file named twice."""
    seen: dict[str, str] = {}
    for path, option in pairs:
        p = check_output_path(path, option)
        if p is None:
            continue
        key = os.path.abspath(p)
        if key in seen:
            raise ParameterError(f"{option} and {seen[key]} both name '{p}': pass two different files")
        seen[key] = option


STATE_KEYS = ("config", "tallies", "clean", "violations", "done")


def check_partial_state(path: Path) -> None:
    """Refuse a ``--resume`` state file that is not one an evaluation wrote."""
    import json

    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        why = f"not JSON: {exc.__class__.__name__}" if not isinstance(exc, OSError) else exc.strerror
        raise ParameterError(f"--resume: the partial state '{path}' is damaged ({why}): delete it to start "
                             f"over, or drop --resume") from None
    missing = [k for k in STATE_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise ParameterError(f"--resume: the partial state '{path}' is damaged (no {', '.join(missing)}): "
                             f"delete it to start over, or drop --resume")


class PartialState:
    """An evaluation's partial state (``OUT.partial``), kept until the final document is written.

    The evaluation engine saves its sums after every batch and deletes the file when it
    returns; the honesty checks and the document come after that. So that a kill during
    the checks does not lose the attack work, a copy (``OUT.partial.kept``) follows every
    saved batch and is put back when the engine returns; :meth:`discard` deletes both once
    the document is on disk. A resumed run then finds every batch done and goes straight
    to the checks.
    """

    def __init__(self, path: Path | None, resume: bool, keep: bool = True):
        self.path = path
        self.kept = path.with_name(path.name + ".kept") if path is not None else None
        self.keep = keep and path is not None
        if path is None or self.kept is None:
            return
        if not resume:
            for p in (path, self.kept):
                if p.exists():
                    p.unlink()
            return
        if not path.exists() and self.kept.exists():  # killed after the engine returned, before restore
            os.replace(self.kept, path)
        if path.exists():
            check_partial_state(path)
            if self.keep:
                self._copy()

    def _copy(self) -> None:
        from advframe.checkpoint import atomic_write_bytes

        assert self.path is not None and self.kept is not None
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        atomic_write_bytes(self.kept, data)

    def wrap(self, callback):  # type: ignore[no-untyped-def]
        """A progress callback that also copies the state after every evaluated batch."""
        if not self.keep:
            return callback

        def keep_then_report(event):  # type: ignore[no-untyped-def]
            if getattr(event, "task", None) == "evaluate":
                self._copy()
            if callback is not None:
                callback(event)

        return keep_then_report

    def restore(self) -> None:
        """Put the copy back where a resumed run looks for it."""
        if self.keep and self.kept is not None and self.path is not None and self.kept.exists():
            os.replace(self.kept, self.path)

    def discard(self) -> None:
        """Delete the state: the final document is written."""
        for p in (self.path, self.kept):
            if p is not None and p.exists():
                p.unlink()
