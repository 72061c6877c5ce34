"""The prepared-slice store: round trip, metadata values, validation, atomic writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ctxseg.data.store import PreparedCase, PreparedStore, StoreError, slice_box, write_store

LABELS = {"0": "background", "1": "a", "2": "b"}


def make_case(name: str, patient: str, z: int, seed: int, phase: str | None = None):
    rng = np.random.default_rng(seed)
    image = rng.random((z, 8, 10), dtype=np.float32)
    label = np.zeros((z, 8, 10), np.uint8)
    label[1, 2:5, 3:7] = 1  # 12 px of class 1, box [2, 3, 5, 7)
    label[1, 6, 9] = 2  # 1 px of class 2 -> box grows to [2, 3, 7, 10)
    return PreparedCase(name, patient, phase, image, label, (2.0, 1.0, 1.0), {"note": name})


def write_three(out, overwrite=False, **kw):
    cases = [make_case("c0", "p0", 3, 0), make_case("c1", "p0", 2, 1), make_case("c2", "p1", 4, 2)]
    splits = kw.pop("splits", {"seed": 0, "train": ["c0", "c1"], "val": [], "test": ["c2"]})
    write_store(out, cases, {"name": "toy", "labels": LABELS}, splits, overwrite=overwrite)
    return cases


def test_round_trip_and_metadata(tmp_path):
    cases = write_three(tmp_path / "s")
    store = PreparedStore.open(tmp_path / "s")
    assert store.images.shape == (9, 8, 10) and store.labels.shape == (9, 8, 10)
    assert isinstance(store.images, np.memmap)
    np.testing.assert_array_equal(store.images[3:5], cases[1].image)
    np.testing.assert_array_equal(store.labels[5:9], cases[2].label)
    assert store.case_rows("c2") == slice(5, 9)
    assert store.num_classes == 3 and store.labels_names == ["background", "a", "b"]
    assert store.image_size == (8, 10)
    assert store.meta["num_slices"] == 9 and store.meta["ctxseg_version"]
    row = store.slices[1]
    assert row == {
        "case": "c0",
        "phase": None,
        "slice_index": 1,
        "fg_pixels": [12, 1],
        "box": [2, 3, 7, 10],
        "split": "train",
    }
    assert store.slices[0]["box"] is None and store.slices[0]["fg_pixels"] == [0, 0]
    assert store.cases[1]["first"] == 3 and store.cases[1]["geometry"] == {"note": "c1"}
    assert store.cases[2]["spacing"] == [2.0, 1.0, 1.0]


def test_indices_and_frequencies(tmp_path):
    write_three(tmp_path / "s")
    store = PreparedStore.open(tmp_path / "s")
    np.testing.assert_array_equal(store.indices("train"), [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(store.indices("train", foreground_only=True), [1, 4])
    np.testing.assert_array_equal(store.indices("test", foreground_only=True), [6])
    assert store.indices("val").size == 0
    assert store.case_ids("train") == ["c0", "c1"] and store.case_ids("test") == ["c2"]
    # Train: 5 slices x 80 px, two slices with 12 + 1 foreground pixels.
    np.testing.assert_array_equal(store.class_frequencies("train"), [400 - 26, 24, 2])
    # Only the 2 foreground slices (what a foreground-only run trains on): 160 px.
    np.testing.assert_array_equal(
        store.class_frequencies("train", foreground_only=True), [160 - 26, 24, 2]
    )
    np.testing.assert_array_equal(store.class_frequencies("val"), [0, 0, 0])
    with pytest.raises(ValueError, match="split must be"):
        store.indices("training")


def test_slice_box_half_open():
    label = np.zeros((5, 6), np.uint8)
    assert slice_box(label) is None
    label[4, 5] = 1
    assert slice_box(label) == [4, 5, 5, 6]


def test_refuses_existing_without_overwrite(tmp_path):
    write_three(tmp_path / "s")
    with pytest.raises(FileExistsError, match="overwrite"):
        write_three(tmp_path / "s")


def test_failed_write_keeps_existing_store(tmp_path):
    write_three(tmp_path / "s")
    before = (tmp_path / "s" / "images.npy").read_bytes()

    def failing_cases():
        yield make_case("n0", "q0", 2, 5)
        raise RuntimeError("reader crashed")

    with pytest.raises(RuntimeError, match="reader crashed"):
        write_store(
            tmp_path / "s",
            failing_cases(),
            {"name": "x", "labels": LABELS},
            {"seed": 0, "train": ["n0"], "val": [], "test": []},
            overwrite=True,
        )
    assert (tmp_path / "s" / "images.npy").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no temporary left behind
    PreparedStore.open(tmp_path / "s")


def test_overwrite_replaces(tmp_path):
    write_three(tmp_path / "s")
    write_store(
        tmp_path / "s",
        [make_case("n0", "q0", 2, 5)],
        {"name": "x", "labels": LABELS},
        {"seed": 1, "train": ["n0"], "val": [], "test": []},
        overwrite=True,
    )
    store = PreparedStore.open(tmp_path / "s")
    assert store.case_ids("all") == ["n0"] and store.splits["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_refuses_to_replace_a_foreign_folder(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "precious.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a prepared store"):
        write_three(tmp_path / "s", overwrite=True)
    assert (tmp_path / "s" / "precious.txt").exists()


@pytest.mark.parametrize(
    ("splits", "message"),
    [
        ({"seed": 0, "train": ["c0"], "val": ["c1"], "test": ["c2"]}, "patient 'p0' is in both"),
        ({"seed": 0, "train": ["c0", "c1"], "val": [], "test": []}, "cases in no split"),
        ({"seed": 0, "train": ["c0", "c1", "zz"], "val": [], "test": ["c2"]}, "unknown case 'zz'"),
    ],
)
def test_bad_splits_rejected(tmp_path, splits, message):
    with pytest.raises(ValueError, match=message):
        write_three(tmp_path / "s", splits=splits)
    assert not (tmp_path / "s").exists()


def test_bad_cases_rejected(tmp_path):
    bad = make_case("c0", "p0", 2, 0)
    bad.label[0, 0, 0] = 3
    with pytest.raises(ValueError, match="label value 3 outside the 3 classes"):
        write_store(
            tmp_path / "s",
            [bad],
            {"name": "x", "labels": LABELS},
            {"seed": 0, "train": ["c0"], "val": [], "test": []},
        )
    bad = make_case("c0", "p0", 2, 0)
    bad.image[1, 1, 1] = 1.5
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        write_store(
            tmp_path / "s",
            [bad],
            {"name": "x", "labels": LABELS},
            {"seed": 0, "train": ["c0"], "val": [], "test": []},
        )
    assert list(tmp_path.iterdir()) == []


def test_open_errors_name_the_problem(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        PreparedStore.open(tmp_path / "nothing")
    write_three(tmp_path / "s")
    (tmp_path / "s" / "slices.json").unlink()
    with pytest.raises(StoreError, match="slices.json is missing"):
        PreparedStore.open(tmp_path / "s")
    write_three(tmp_path / "t")
    cases = json.loads((tmp_path / "t" / "cases.json").read_text())
    cases[1]["num_slices"] = 1
    (tmp_path / "t" / "cases.json").write_text(json.dumps(cases))
    with pytest.raises(StoreError, match="not contiguous|cover"):
        PreparedStore.open(tmp_path / "t")
    write_three(tmp_path / "u")
    np.save(tmp_path / "u" / "labels.npy", np.zeros((9, 8, 10), np.int64))
    with pytest.raises(StoreError, match="labels.npy: expected uint8"):
        PreparedStore.open(tmp_path / "u")
