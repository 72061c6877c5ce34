"""Exceptions that the ``ctxseg`` command turns into one-line messages (no traceback)."""

from __future__ import annotations

__all__ = ["CLIError"]


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2, no traceback."""
