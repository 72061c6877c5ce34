"""Seeded patient-level splits and respected list files."""

from __future__ import annotations

import pytest

from ctxseg.data.splits import make_splits, read_list_files


def cardiac_cases(n):
    cases = [f"p{i:02d}_{ph}" for i in range(n) for ph in ("ED", "ES")]
    return cases, {c: c.split("_")[0] for c in cases}


def test_counts_and_no_patient_in_two_parts():
    cases, groups = cardiac_cases(20)
    splits = make_splits(cases, seed=3, groups=groups)
    # 20 patients: 6 test, round(0.15 * 14) = 2 val, 12 train; both phases together.
    assert [len(splits[k]) for k in ("train", "val", "test")] == [24, 4, 12]
    parts = {k: {groups[c] for c in splits[k]} for k in ("train", "val", "test")}
    assert not parts["train"] & parts["val"] and not parts["train"] & parts["test"]
    assert not parts["val"] & parts["test"]
    assert sorted(splits["train"] + splits["val"] + splits["test"]) == sorted(cases)
    assert splits["seed"] == 3


def test_deterministic_and_seed_dependent():
    cases = [f"Case{i:02d}" for i in range(25)]
    a, b = make_splits(cases, seed=0), make_splits(cases, seed=0)
    assert a == b
    assert make_splits(cases, seed=1)["test"] != a["test"]
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (14, 3, 8)
    # The order in which cases are given does not matter.
    assert make_splits(list(reversed(cases)), seed=0) == a


def test_given_lists_respected_and_rest_drawn():
    cases, groups = cardiac_cases(10)
    given = {"train": ["p00_ED", "p01"], "val": ["p02_ES"], "test": ["p03"]}
    splits = make_splits(cases, seed=0, groups=groups, given=given)
    assert {"p00_ED", "p00_ES", "p01_ED", "p01_ES"} <= set(splits["train"])
    assert {"p02_ED", "p02_ES"} <= set(splits["val"])
    assert {"p03_ED", "p03_ES"} <= set(splits["test"])
    # The 6 unlisted patients are drawn: round(0.3 * 6) = 2 more test patients.
    assert len(splits["test"]) == 2 * (1 + 2)


def test_lists_without_a_test_part_make_their_val_list_the_test_split():
    """The split that selects a model is never the one it is reported on (SPEC §8)."""
    cases, groups = cardiac_cases(12)
    train = [f"p{i:02d}" for i in range(10)]
    given = {"train": train, "val": ["p10", "p11"]}
    splits = make_splits(cases, seed=4, groups=groups, given=given)
    assert splits["test"] == ["p10_ED", "p10_ES", "p11_ED", "p11_ES"]
    val_patients = {groups[c] for c in splits["val"]}
    assert len(val_patients) == 2 and val_patients <= set(train)  # round(0.15 * 10) = 2
    assert {groups[c] for c in splits["train"]} == set(train) - val_patients
    assert "val.list patients are the test split" in splits["note"]
    assert make_splits(cases, seed=4, groups=groups, given=given) == splits  # seeded
    other = make_splits(cases, seed=5, groups=groups, given=given)
    assert other["test"] == splits["test"]


def test_three_lists_are_respected_exactly():
    cases, groups = cardiac_cases(4)
    given = {"train": ["p00", "p01"], "val": ["p02"], "test": ["p03"]}
    splits = make_splits(cases, seed=0, groups=groups, given=given)
    assert splits["val"] == ["p02_ED", "p02_ES"] and splits["test"] == ["p03_ED", "p03_ES"]
    assert splits["note"] == "split lists used: train.list, val.list, test.list"


def test_given_errors():
    cases, groups = cardiac_cases(3)
    with pytest.raises(ValueError, match="'p09'.*not in the dataset"):
        make_splits(cases, seed=0, groups=groups, given={"train": ["p09"]})
    with pytest.raises(ValueError, match="patient 'p00' is listed in both"):
        make_splits(cases, seed=0, groups=groups, given={"train": ["p00_ED"], "val": ["p00_ES"]})
    with pytest.raises(ValueError, match="test_fraction"):
        make_splits(cases, seed=0, test_fraction=1.0)


def test_read_list_files(tmp_path):
    (tmp_path / "train.list").write_text("a\n b \n\n")
    (tmp_path / "val.list").write_text("c\n")
    assert read_list_files(tmp_path) == {"train": ["a", "b"], "val": ["c"]}
