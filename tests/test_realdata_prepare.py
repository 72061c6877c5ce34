"""Opt-in: preparation of the real sets under ``shared_data`` (see ../shared/data/README.md)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import SimpleITK as sitk

from ctxseg.data.acdc import SSL4MIS_SPACING, prepare_acdc
from ctxseg.data.preprocess import restore_label
from ctxseg.data.promise12 import prepare_promise12

pytestmark = pytest.mark.realdata


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    store = fn(*args, **kwargs)
    print(f"\n{fn.__name__}: {len(store.slices)} slices in {time.perf_counter() - start:.1f} s")
    return store


@pytest.fixture(scope="module")
def acdc(shared_data, tmp_path_factory):
    raw = shared_data / "acdc-ssl4mis"
    if not raw.is_dir():
        pytest.skip(f"{raw} not found")
    return _timed(prepare_acdc, raw, tmp_path_factory.mktemp("acdc") / "store")


@pytest.fixture(scope="module")
def prostate(shared_data, tmp_path_factory):
    raw = shared_data / "prostate-promise12-layout"
    if not raw.is_dir():
        pytest.skip(f"{raw} not found")
    return raw, _timed(prepare_promise12, raw, tmp_path_factory.mktemp("p12") / "store")


def test_acdc_counts_follow_the_lists(acdc, shared_data):
    assert acdc.meta["source_format"] == "acdc-ssl4mis"
    # train.list: 70 patients (1312 slices, train_slices.list of the source), split into
    # train and a drawn val; val.list: 10 patients, the test split (never used to select).
    train_patients = {acdc.case(c)["patient"] for c in acdc.case_ids("train")}
    val_patients = {acdc.case(c)["patient"] for c in acdc.case_ids("val")}
    test_patients = {acdc.case(c)["patient"] for c in acdc.case_ids("test")}
    # round(0.15 * 70) = 11 validation patients.
    assert len(train_patients) == 59 and len(val_patients) == 11 and len(test_patients) == 10
    assert acdc.indices("train").size + acdc.indices("val").size == 1312
    assert not train_patients & val_patients and not (train_patients | val_patients) & test_patients
    listed_val = (shared_data / "acdc-ssl4mis" / "val.list").read_text().split()
    assert sorted(acdc.case_ids("test")) == sorted(listed_val)
    assert acdc.image_size == (160, 160)
    assert acdc.meta["assumed_spacing"] == list(SSL4MIS_SPACING)
    sample = np.asarray(acdc.images[::7])
    assert sample.min() >= 0.0 and sample.max() <= 1.0
    counts = acdc.class_frequencies("train")
    assert (counts[1:] > 0).all() and counts[1:].sum() < 0.1 * counts.sum()


def test_prostate_slices_range_and_gland_kept(prostate):
    raw, store = prostate
    assert len(store.cases) == 25 and store.image_size == (128, 128)
    images = np.asarray(store.images)
    assert images.min() == 0.0 and images.max() == 1.0
    assert all(c["spacing"] == [1.0, 1.0, 1.0] for c in store.cases)
    assert {len(store.splits[k]) for k in ("train", "val", "test")} == {14, 3, 8}
    # The 128 mm crop keeps the gland: prepared volume (1 mm^3 voxels) vs source volume.
    for case in store.cases[::6]:
        mask = sitk.ReadImage(str(raw / f"{case['case']}_segmentation.mhd"))
        source_mm3 = sitk.GetArrayViewFromImage(mask).sum() * np.prod(mask.GetSpacing())
        prepared_mm3 = int(store.labels[store.case_rows(case["case"])].sum())
        assert prepared_mm3 == pytest.approx(source_mm3, rel=0.05), case["case"]


def test_prostate_restore_label(prostate):
    raw, store = prostate
    case = store.case("Case03")
    restored = restore_label(store.labels[store.case_rows("Case03")], case["geometry"])
    original = sitk.ReadImage(str(raw / "Case03_segmentation.mhd"))
    assert restored.GetSize() == original.GetSize()
    np.testing.assert_allclose(restored.GetDirection(), original.GetDirection(), atol=1e-6)
    a = sitk.GetArrayFromImage(restored).astype(bool)
    b = sitk.GetArrayFromImage(original).astype(bool)
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.95
