"""Synthetic MR data sets that stand in for PROMISE12 and ACDC (no download needed).

Phantoms are written first as raw files in the real data sets' own layouts (PROMISE12
``CaseNN.mhd`` + ``.raw``; ACDC ``patientNNN/Info.cfg`` + NIfTI) and then prepared by the same
code as real scans (:func:`ctxseg.data.promise12.prepare_promise12`,
:func:`ctxseg.data.acdc.prepare_acdc`), so the whole reading and preprocessing path is exercised.
How they are made and how their statistics compare with the real sets: docs/data.md.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .cardiac import make_cardiac_patient, write_cardiac_phantoms
from .prostate import make_prostate_case, write_prostate_phantoms

if TYPE_CHECKING:
    from ctxseg.data.store import PreparedStore

__all__ = [
    "DEFAULT_CASES",
    "make_cardiac_patient",
    "make_prostate_case",
    "prepare_phantom",
    "write_cardiac_phantoms",
    "write_prostate_phantoms",
]

DEFAULT_CASES = {"prostate": 20, "cardiac": 20}


def prepare_phantom(
    kind: str,
    out: str | os.PathLike,
    cases: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> PreparedStore:
    """Generate a phantom data set and prepare it into a store at ``out``.

    Args:
        kind: ``"prostate"`` (PROMISE12-like, 128 x 128 slices at 1 mm) or ``"cardiac"``
            (ACDC-like, 160 x 160, ED and ES per patient); ``"phantom-"`` prefix accepted.
        out: Store folder to create.
        cases: Number of cases (prostate) or patients (cardiac); default 20 each.
        seed: Seeds both the phantoms and the split; the same seed gives identical arrays.
        overwrite: Replace an existing store at ``out``.

    Returns:
        The opened store; its ``dataset.json`` name is ``phantom-<kind>``.

    Raises:
        ValueError: Unknown ``kind`` or ``cases < 1``.
    """
    kind = kind.removeprefix("phantom-")
    if kind not in DEFAULT_CASES:
        raise ValueError(f"kind must be one of {sorted(DEFAULT_CASES)}, got {kind!r}")
    cases = DEFAULT_CASES[kind] if cases is None else int(cases)
    if cases < 1:
        raise ValueError(f"cases must be >= 1, got {cases}")
    # Imported here: the preparers pull in the whole reading stack, the generators do not.
    from ctxseg.data.acdc import prepare_acdc
    from ctxseg.data.promise12 import prepare_promise12

    with tempfile.TemporaryDirectory(prefix=f"ctxseg-phantom-{kind}-") as tmp:
        raw = Path(tmp) / "raw"
        if kind == "prostate":
            write_prostate_phantoms(raw, cases, seed)
            return prepare_promise12(
                raw, out, seed=seed, overwrite=overwrite, name="phantom-prostate"
            )
        write_cardiac_phantoms(raw, cases, seed)
        return prepare_acdc(raw, out, seed=seed, overwrite=overwrite, name="phantom-cardiac")
