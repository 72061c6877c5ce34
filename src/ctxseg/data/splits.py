"""Seeded train / val / test splits by patient (SPEC §3).

The paper splits 70 / 30 by volume (PROMISE12) or patient (ACDC) and selects models on the test
part; this project keeps a validation part apart, taken from the non-test patients. A split
never puts two cases of one patient (e.g. the ED and ES frames) in different parts. List files
shipped with a dataset (``train.list`` ...) take precedence over the random draw; lists that
define a validation part but no test part (SSL4MIS's ACDC lists) make their validation
patients the *test* part, and the validation part is drawn from the listed training patients,
so that the split that selects a model is never the one it is reported on (SPEC §8).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ctxseg.data.store import SPLIT_NAMES, check_splits


def _count(fraction: float, total: int) -> int:
    """Round ``fraction * total``, but at least 1 when the fraction is positive and room remains."""
    if fraction <= 0 or total <= 1:
        return 0
    return min(max(int(np.floor(fraction * total + 0.5)), 1), total - 1)


def make_splits(
    case_ids: Sequence[str],
    seed: int,
    test_fraction: float = 0.3,
    val_fraction: float = 0.15,
    groups: Mapping[str, str] | None = None,
    given: Mapping[str, Sequence[str]] | None = None,
) -> dict:
    """Split cases into train / val / test by patient, reproducibly.

    Patients are sorted, shuffled with ``numpy.random.default_rng(seed)``; the first
    ``round(test_fraction * P)`` go to test, then ``round(val_fraction * (P - test))`` of the rest
    to val (at least one each when the fraction is positive and there are patients to spare).

    Args:
        case_ids: All case ids of the dataset.
        seed: Seed of the draw (saved in the result).
        test_fraction: Fraction of patients in test (paper: 0.3).
        val_fraction: Fraction of the non-test patients in val.
        groups: Case id -> patient id; default: each case is its own patient.
        given: Lists shipped with the dataset, ``{"train": [...], "val": [...], "test": [...]}``
            (any subset of the parts) naming case ids or patient ids. Listed cases keep their
            part; a case of a listed patient follows its patient; cases left unnamed are split
            by the seeded draw above. Lists with a ``"val"`` part but no ``"test"`` part: the
            ``"val"`` list becomes the test part and ``round(val_fraction * P_train)`` of the
            listed training patients (at least one) are drawn into val.

    Returns:
        ``{"seed": seed, "train": [...], "val": [...], "test": [...], "note": str}``, case ids
        sorted; ``note`` says in words where each part came from (shown by ``prepare`` and
        kept in ``dataset.json``).

    Raises:
        ValueError: Bad fractions, duplicate ids, unknown names in ``given``, or a patient named
            in two lists.
    """
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    cases = list(case_ids)
    if len(set(cases)) != len(cases):
        raise ValueError("case ids are not unique")
    patient_of = {c: (groups[c] if groups is not None else c) for c in cases}
    parts: dict[str, set[str]] = {name: set() for name in SPLIT_NAMES}

    given = dict(given or {})
    listed = [name for name in SPLIT_NAMES if name in given]
    promoted = "val" in given and "test" not in given
    if promoted:  # the shipped validation list is the only held-out part: report on it
        given["test"] = given.pop("val")
    patient_part: dict[str, str] = {}
    for name, names in given.items():
        if name not in SPLIT_NAMES:
            raise ValueError(f"unknown split list {name!r}; expected one of {SPLIT_NAMES}")
        for item in names:
            if item in patient_of:
                patient = patient_of[item]
            elif item in patient_of.values():
                patient = item
            else:
                raise ValueError(f"split list {name!r} names {item!r}, which is not in the dataset")
            previous = patient_part.setdefault(patient, name)
            if previous != name:
                raise ValueError(f"patient {patient!r} is listed in both {previous!r} and {name!r}")

    rng = np.random.default_rng(seed)
    drawn_val = 0
    if promoted:
        listed_train = sorted(p for p, part in patient_part.items() if part == "train")
        drawn_val = _count(val_fraction, len(listed_train))
        for i in rng.permutation(len(listed_train))[:drawn_val]:
            patient_part[listed_train[i]] = "val"
    free = sorted({p for p in patient_of.values() if p not in patient_part})
    order = [free[i] for i in rng.permutation(len(free))]
    n_test = _count(test_fraction, len(order))
    n_val = _count(val_fraction, len(order) - n_test)
    for i, patient in enumerate(order):
        patient_part[patient] = "test" if i < n_test else "val" if i < n_test + n_val else "train"

    for case in cases:
        parts[patient_part[patient_of[case]]].add(case)
    splits = {"seed": int(seed), **{name: sorted(parts[name]) for name in SPLIT_NAMES}}
    check_splits(splits, patient_of)
    splits["note"] = _note(listed, promoted, drawn_val, len(free), seed)
    return splits


def _note(listed: Sequence[str], promoted: bool, drawn_val: int, free: int, seed: int) -> str:
    """Where each part of a split came from, in words.

    Args:
        listed: the names of the shipped lists (``"train"``, ``"val"``, ``"test"``).
        promoted: the val list became the test part.
        drawn_val: listed training patients drawn into val.
        free: unlisted patients split at random.
        seed: the split seed.
    """
    if not listed:
        return f"no split lists: a seeded random split by patient (seed {seed})"
    parts = ["split lists used: " + ", ".join(f"{name}.list" for name in listed)]
    if promoted:
        parts.append(
            "the lists define no test part, so the val.list patients are the test split and "
            f"{drawn_val} patient(s) of train.list were drawn into val (seed {seed}) for model "
            "selection"
        )
    if free:
        parts.append(f"{free} unlisted patient(s) split at random (seed {seed})")
    return "; ".join(parts)


def read_list_files(folder: Path) -> dict[str, list[str]]:
    """Read ``train.list`` / ``val.list`` / ``test.list`` in ``folder`` (those that exist).

    Returns:
        Part name -> the non-empty stripped lines of its file.
    """
    lists = {}
    for name in SPLIT_NAMES:
        path = Path(folder) / f"{name}.list"
        if path.is_file():
            lists[name] = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return lists
