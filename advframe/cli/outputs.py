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
