"""Opening the prepared store a config names, preparing a missing phantom on the way."""

from __future__ import annotations

import logging
from pathlib import Path

from ctxseg.data.store import PreparedStore
from ctxseg.engine.distributed import DistContext

__all__ = ["open_store"]

log = logging.getLogger(__name__)

PHANTOM_PREFIX = "phantom-"


def open_store(root: str | Path, dist: DistContext | None = None) -> PreparedStore:
    """Open the prepared store at ``root`` (relative paths against the working directory).

    A missing ``phantom-<kind>`` store is prepared on the spot (synthetic, no download; rank 0
    prepares while the other processes wait). A missing real dataset is an error that says
    which ``ctxseg prepare`` command makes it.

    Raises:
        FileNotFoundError: a real dataset that has not been prepared.
        ValueError: a store that exists but is incomplete or inconsistent.
    """
    root = Path(root)
    dist = dist or DistContext()
    if not root.exists():
        name = root.name
        if not name.startswith(PHANTOM_PREFIX):
            raise FileNotFoundError(
                f"data.root {root} does not exist: prepare the dataset first, e.g. "
                f"`ctxseg prepare {name} --raw <raw folder> --out {root}` "
                "(see `ctxseg prepare --help`)"
            )
        if dist.is_main:
            from ctxseg.data.phantoms import prepare_phantom

            kind = name[len(PHANTOM_PREFIX) :]
            log.info("preparing the %s phantom in %s (first use)", kind, root)
            prepare_phantom(kind, root)
        dist.barrier()
    return PreparedStore.open(root)
