"""Verbs of this part of the package (filled in by its owner)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this part's verbs to the ``ctxseg`` command."""
