"""Exceptions that the ``ctxseg`` command turns into one-line messages (no traceback)."""

from __future__ import annotations

import os

__all__ = ["CLIError", "os_error_at"]


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2, no traceback."""


def os_error_at(err: OSError, path: str | os.PathLike, note: str = "") -> OSError:
    """``err`` as an ``OSError`` that names ``path`` (a failed write to an open file names none).

    Args:
        err: the error raised by the operating system.
        path: the file or folder that was being written.
        note: appended to the cause, e.g. ``" (the previous checkpoint is kept)"``.

    Returns:
        A new ``OSError`` of the same errno (so of the same subclass), with ``filename=path``.
    """
    cause = err.strerror or str(err)
    return OSError(err.errno, f"{cause}{note}", str(path))
