"""PROMISE12 preparation on synthetic files in its layout (known anisotropic geometry)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from ctxseg.cli import main
from ctxseg.data.io import RawDataError
from ctxseg.data.promise12 import prepare_promise12
from ctxseg.data.store import PreparedStore

SPACING = (0.6, 0.6, 3.6)  # (x, y, z) mm, PROMISE12-like
SHAPE = (6, 50, 60)  # (z, y, x) -> at 1 mm: (22, 30, 36)


def write_case(raw, name, seed, suffix=".mhd", label_value=1, spacing=SPACING, nan=False):
    rng = np.random.default_rng(seed)
    image = rng.integers(100, 900, SHAPE).astype(np.uint16 if not nan else np.float32)
    image[0, 0, 0] = 60000 if not nan else np.nan  # an outlier voxel
    label = np.zeros(SHAPE, np.uint8)
    label[2:5, 20:32, 25:40] = label_value
    for array, stem in ((image, name), (label, f"{name}_segmentation")):
        vol = sitk.GetImageFromArray(array)
        vol.SetSpacing(spacing)
        vol.SetOrigin((-10.0, 4.0, 2.0))
        sitk.WriteImage(vol, str(raw / f"{stem}{suffix}"), useCompression=suffix == ".mhd")


@pytest.fixture()
def raw(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    for i in range(5):
        write_case(folder, f"Case{i:02d}", i, suffix=".nii.gz" if i == 4 else ".mhd")
    return folder


def test_prepared_geometry_range_and_splits(raw, tmp_path):
    store = prepare_promise12(raw, tmp_path / "out", seed=0, size=32)
    assert store.images.shape == (5 * 22, 32, 32)
    assert store.case_ids("all") == [f"Case{i:02d}" for i in range(5)]
    case = store.case("Case01")
    assert case["spacing"] == [1.0, 1.0, 1.0] and case["num_slices"] == 22
    assert case["geometry"]["resampled"]["size"] == [36, 30, 22]
    assert case["geometry"]["source"]["spacing"] == pytest.approx(list(SPACING))
    images = np.asarray(store.images)
    assert images.min() == 0.0 and images.max() == 1.0
    # The outlier is clipped, so ordinary tissue keeps most of the range.
    assert np.median(images[images > 0]) > 0.3
    # 5 cases: round(1.5) = 2 test, round(0.15 * 3) -> 1 val (at least one), 2 train.
    assert [len(store.splits[k]) for k in ("train", "val", "test")] == [2, 1, 2]
    meta = store.meta
    assert meta["labels"] == {"0": "background", "1": "prostate"}
    assert meta["preprocessing"]["spacing"] == [1.0, 1.0, 1.0]
    assert {"Case00.mhd", "Case00.zraw", "Case04.nii.gz"} <= set(meta["sources"])
    # Mask z 2..4 (centres 7.2-14.4 mm); nearest neighbour gives 1 mm slice j the source
    # slice round(j / 3.6), which is in 2..4 for j / 3.6 in [1.5, 4.5): j = 6..16.
    fg = [s["slice_index"] for s in store.slices if s["case"] == "Case00" and s["box"]]
    assert fg == list(range(6, 17))


def test_deterministic(raw, tmp_path):
    a = prepare_promise12(raw, tmp_path / "a", seed=3, size=32)
    b = prepare_promise12(raw, tmp_path / "b", seed=3, size=32)
    assert a.splits == b.splits
    np.testing.assert_array_equal(a.images, b.images)
    assert (tmp_path / "a" / "slices.json").read_text() == (
        tmp_path / "b" / "slices.json"
    ).read_text()
    assert prepare_promise12(raw, tmp_path / "c", seed=4, size=32).splits != a.splits


def test_list_files_respected(raw, tmp_path):
    (raw / "test.list").write_text("Case00\nCase03\n")
    (raw / "val.list").write_text("Case01\n")
    (raw / "train.list").write_text("Case02\nCase04\n")
    store = prepare_promise12(raw, tmp_path / "out", size=32)
    assert store.splits["test"] == ["Case00", "Case03"] and store.splits["val"] == ["Case01"]


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda raw: (raw / "Case02_segmentation.mhd").unlink(), "Case02.mhd: image without seg"),
        (
            lambda raw: write_case(raw, "Case02", 0, label_value=2),
            r"Case02_segmentation.mhd: label values \[2\]",
        ),
        (lambda raw: write_case(raw, "Case03", 0, nan=True), "Case03.mhd: 1 NaN"),
        (lambda raw: (raw / "Case01.zraw").write_bytes(b""), "Case01.zraw: empty file"),
    ],
)
def test_bad_input_named_and_existing_store_kept(raw, tmp_path, breakage, message):
    good = prepare_promise12(raw, tmp_path / "out", size=32)
    before = (tmp_path / "out" / "images.npy").read_bytes()
    breakage(raw)
    with pytest.raises(RawDataError, match=message):
        prepare_promise12(raw, tmp_path / "out", size=32, overwrite=True)
    assert (tmp_path / "out" / "images.npy").read_bytes() == before
    assert PreparedStore.open(tmp_path / "out").splits == good.splits
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw"]


def test_geometry_mismatch_names_both(raw, tmp_path):
    mask = sitk.ReadImage(str(raw / "Case01_segmentation.mhd"))
    mask.SetSpacing((0.6, 0.6, 4.0))
    sitk.WriteImage(mask, str(raw / "Case01_segmentation.mhd"), useCompression=True)
    with pytest.raises(RawDataError, match="image .*Case01.mhd and mask .*Case01_segmentation.mhd"):
        prepare_promise12(raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_empty_and_missing_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RawDataError, match="empty.*no CaseNN"):
        prepare_promise12(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(RawDataError, match="nowhere: raw PROMISE12 folder does not exist"):
        prepare_promise12(tmp_path / "nowhere", tmp_path / "out")


def test_cli(raw, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["prepare", "promise12", "--raw", str(raw), "--out", str(out), "--size", "32"]) == 0
    assert "train 2 cases" in capsys.readouterr().out
    assert json.loads((out / "dataset.json").read_text())["image_size"] == [32, 32]
    assert main(["prepare", "promise12", "--raw", str(raw), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["prepare", "promise12", "--raw", str(raw), "--out", str(out), "--overwrite"]) == 0
    assert PreparedStore.open(out).image_size == (128, 128)
    (raw / "Case00_segmentation.mhd").unlink()
    assert main(["prepare", "promise12", "--raw", str(raw), "--out", str(tmp_path / "x")]) == 2
    assert "Case00.mhd: image without segmentation" in capsys.readouterr().err
