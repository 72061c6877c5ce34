"""ctxseg.data: raw-data preparation, the prepared-slice store, splits and the slice Dataset.

The store, splits and Dataset import eagerly; the preparers (which need SimpleITK / h5py) are
imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from ctxseg.data.dataset import SliceDataset
from ctxseg.data.splits import make_splits
from ctxseg.data.store import PreparedCase, PreparedStore, StoreError, write_store

_LAZY = {
    "prepare_promise12": "ctxseg.data.promise12",
    "prepare_acdc": "ctxseg.data.acdc",
    "prepare_nnunet": "ctxseg.data.nnunet",
    "prepare_phantom": "ctxseg.data.phantoms",
    "preprocess_image": "ctxseg.data.preprocess",
    "preprocess_label": "ctxseg.data.preprocess",
    "restore_label": "ctxseg.data.preprocess",
}

__all__ = [
    "PreparedCase",
    "PreparedStore",
    "SliceDataset",
    "StoreError",
    "make_splits",
    "write_store",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ctxseg.data' has no attribute {name!r}")
