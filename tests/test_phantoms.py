"""Phantoms: shapes and MR fields, raw files in the real layouts, imbalance, prepared stores."""

from __future__ import annotations

import json
import re

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from ctxseg.data.phantoms import (
    make_cardiac_patient,
    make_prostate_case,
    mr,
    prepare_phantom,
    write_cardiac_phantoms,
    write_prostate_phantoms,
)
from ctxseg.data.phantoms.cardiac import GROUPS
from ctxseg.data.phantoms.shapes import Grid, Perturbation, ellipsoid, rotation
from ctxseg.data.store import PreparedStore


def _cardiac(seed: int, i: int, group: str):
    rngs = (np.random.default_rng([seed, i, 1]), np.random.default_rng([seed, i, 2]))
    return make_cardiac_patient(np.random.default_rng([seed, i, 0]), rngs, group=group)


@pytest.fixture(scope="module")
def prostate_cases():
    return [make_prostate_case(np.random.default_rng([3, i])) for i in range(4)]


@pytest.fixture(scope="module")
def cardiac_patients():
    return [_cardiac(3, i, g) for i, g in enumerate(GROUPS)]


# --- shapes and MR fields -------------------------------------------------------------------


def test_ellipsoid_volume_and_rotation():
    grid = Grid((60, 80, 80), (1.0, 0.5, 0.5))
    radii = (12.0, 8.0, 20.0)
    exact = 4 / 3 * np.pi * np.prod(radii)
    for rot in (None, rotation(0.7, 0.3)):
        m = ellipsoid(grid, (1.0, -2.0, 3.0), radii, rot=rot, edge=0.5)
        assert m.min() >= 0 and m.max() == 1
        assert abs(m.sum() * 0.25 - exact) / exact < 0.01  # voxel volume 0.25 mm^3
    # Soft edge: 0.5 on the surface, along x at the centre row.
    m = ellipsoid(grid, (0.0, 0.0, 0.0), (10.0, 10.0, 10.0), edge=1.0)
    x = grid.axis(2)
    profile = m[29:31, 39:41].mean(axis=(0, 1))  # the two rows / slices around the centre
    assert np.interp(0.5, profile[x > 0][::-1], x[x > 0][::-1]) == pytest.approx(10.0, abs=0.1)


def test_perturbation_changes_the_outline_but_not_much_the_size():
    grid = Grid((40, 96, 96), (1.0, 0.5, 0.5))
    plain = ellipsoid(grid, (0, 0, 0), (15, 10, 12)) >= 0.5
    bumpy = ellipsoid(
        grid, (0, 0, 0), (15, 10, 12), perturb=Perturbation.random(np.random.default_rng(0), 0.1)
    )
    bumpy = bumpy >= 0.5
    assert (plain ^ bumpy).sum() > 0.05 * plain.sum()
    assert 0.7 < bumpy.sum() / plain.sum() < 1.3


def test_shape_arguments_are_validated():
    grid = Grid((4, 8, 8), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="radii"):
        ellipsoid(grid, (0, 0, 0), (1.0, -1.0, 1.0))
    with pytest.raises(ValueError, match="taper"):
        ellipsoid(grid, (0, 0, 0), (1.0, 1.0, 1.0), taper=1.0)
    with pytest.raises(ValueError, match="spacing"):
        Grid((4, 8, 8), (1.0, 0.0, 1.0))


def test_rician_noise_of_zero_signal_is_rayleigh():
    rng = np.random.default_rng(0)
    noise = mr.rician(np.zeros(200_000, np.float32), 2.0, rng)
    assert noise.min() >= 0
    assert noise.mean() == pytest.approx(2.0 * np.sqrt(np.pi / 2), rel=0.01)
    assert (noise**2).mean() == pytest.approx(2 * 2.0**2, rel=0.02)


def test_smooth_field_has_unit_rms_and_no_fine_detail():
    grid = Grid((8, 128, 128), (4.0, 1.0, 1.0))
    f = mr.smooth_field(grid, np.random.default_rng(1), (30.0, 60.0), components=16)
    assert np.sqrt((f**2).mean()) == pytest.approx(1.0, abs=0.35)
    # Neighbouring pixels (1 mm apart) differ by far less than the field's range.
    assert np.abs(np.diff(f, axis=2)).max() < 0.25 * (f.max() - f.min())


# --- prostate -------------------------------------------------------------------------------


def test_prostate_is_deterministic_per_seed():
    a = make_prostate_case(np.random.default_rng([5, 0]))
    b = make_prostate_case(np.random.default_rng([5, 0]))
    c = make_prostate_case(np.random.default_rng([5, 1]))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label)
    assert not np.array_equal(a.label, c.label)


def test_prostate_raw_files_follow_promise12(tmp_path):
    paths = write_prostate_phantoms(tmp_path, cases=2, seed=4)
    assert [p.name for p in paths] == ["Case00.mhd", "Case01.mhd"]
    for p in paths:
        assert p.with_suffix(".raw").is_file()
        img = sitk.ReadImage(str(p))
        seg = sitk.ReadImage(str(p.with_name(p.stem + "_segmentation.mhd")))
        assert img.GetPixelID() == sitk.sitkUInt16 and seg.GetPixelID() == sitk.sitkUInt8
        sx, sy, sz = img.GetSpacing()
        assert (sx, sy) == (0.75, 0.75) and sz in (3.6, 4.0)  # anisotropic, like PROMISE12
        assert img.GetSize()[:2] == (256, 256) and 15 <= img.GetSize()[2] <= 24
        assert seg.GetSize() == img.GetSize() and seg.GetSpacing() == img.GetSpacing()
        assert set(np.unique(sitk.GetArrayFromImage(seg))) == {0, 1}
    again = sitk.GetArrayFromImage(sitk.ReadImage(str(paths[1])))
    expected = make_prostate_case(np.random.default_rng([4, 1])).image
    assert np.array_equal(again, expected)  # case i depends only on (seed, i)


def test_prostate_imbalance(prostate_cases):
    for vol in prostate_cases:
        lab = vol.label
        z, h, w = lab.shape
        half = int(round(64 / vol.spacing[1]))  # the 128 mm centre crop of the prepared set
        frac = lab[:, h // 2 - half : h // 2 + half, w // 2 - half : w // 2 + half]
        frac = frac.reshape(z, -1).mean(axis=1)  # (Z,) foreground fraction per slice
        nz = np.flatnonzero(frac)
        assert 0.02 < frac.max() < 0.35  # a few % of a mid-gland slice (real: 6-35 %)
        assert min(frac[nz[0]], frac[nz[-1]]) < 0.6 * frac.max()  # smaller at apex / base
        assert (frac == 0).sum() >= 2  # slices above the base and below the apex are empty
        assert nz[-1] - nz[0] + 1 == nz.size  # one connected range of slices


def test_prostate_has_distractors_of_similar_intensity(prostate_cases):
    contrasts = []
    for vol in prostate_cases:
        img, lab = vol.image.astype(np.float64), vol.label.astype(bool)
        # A 7-pixel (about 5 mm) in-plane ring around the gland: rectum wall, muscles, fat, ...
        ring = ndimage.binary_dilation(lab, np.ones((1, 3, 3), bool), iterations=7) & ~lab
        contrasts.append((img[lab].mean() - img[ring].mean()) / img[ring].std())
        assert 0.7 < img[lab].mean() / img[ring].mean() < 1.5
    # Not separable by intensity. The 25 real cases: -0.26 to +1.01, mean |contrast| 0.26.
    assert np.abs(contrasts).max() < 1.2 and np.abs(contrasts).mean() < 0.7


# --- cardiac --------------------------------------------------------------------------------


def test_cardiac_is_deterministic_per_seed():
    (info_a, a), (info_b, b) = _cardiac(9, 0, "HCM"), _cardiac(9, 0, "HCM")
    assert info_a == info_b
    for ph in ("ED", "ES"):
        assert np.array_equal(a[ph].image, b[ph].image)
        assert np.array_equal(a[ph].label, b[ph].label)
    with pytest.raises(ValueError, match="group"):
        _cardiac(9, 0, "XYZ")


def test_cardiac_raw_files_follow_acdc(tmp_path):
    folders = write_cardiac_phantoms(tmp_path, cases=2, seed=6)
    assert [f.name for f in folders] == ["patient001", "patient002"]
    for folder in folders:
        info = dict(
            line.split(": ") for line in (folder / "Info.cfg").read_text().strip().splitlines()
        )
        assert {"ED", "ES", "Group", "Height", "NbFrame", "Weight"} <= set(info)
        frames = sorted(int(m.group(1)) for m in map(re.compile(r".*_frame(\d+)\.nii\.gz").match,
                        (p.name for p in folder.iterdir())) if m)  # fmt: skip
        assert frames == sorted([int(info["ED"]), int(info["ES"])])
        for f in frames:
            img = nib.load(folder / f"{folder.name}_frame{f:02d}.nii.gz")
            gt = nib.load(folder / f"{folder.name}_frame{f:02d}_gt.nii.gz")
            zooms = img.header.get_zooms()
            assert zooms == gt.header.get_zooms() and img.shape == gt.shape
            assert zooms[2] in (6.5, 8.0, 10.0) and 1.25 <= zooms[0] == zooms[1] <= 1.6
            assert set(np.unique(np.asarray(gt.dataobj))) <= {0, 1, 2, 3}


def test_cardiac_classes_and_phases(cardiac_patients):
    totals = np.zeros(4)
    for _, frames in cardiac_patients:
        ed, es = frames["ED"].label, frames["ES"].label
        for lab in (ed, es):
            counts = np.bincount(lab.ravel(), minlength=4)
            assert (counts[1:] > 0).all()  # RV, Myo and LV in every volume
            totals += counts
        per_slice = (ed == 3).reshape(len(ed), -1).sum(axis=1)  # LV pixels per slice
        nz = np.flatnonzero(per_slice)
        assert per_slice[nz[-1]] < 0.4 * per_slice.max()  # the apical LV slice is tiny
        # End-systole: smaller LV cavity, thicker wall (equivalent-circle radii on the
        # largest-LV slice).
        assert (es == 3).sum() < 0.9 * (ed == 3).sum()

        def thickness(lab):
            k = np.argmax((lab == 3).reshape(len(lab), -1).sum(axis=1))
            lv, myo = (lab[k] == 3).sum(), (lab[k] == 2).sum()
            return np.sqrt((lv + myo) / np.pi) - np.sqrt(lv / np.pi)

        assert thickness(es) > thickness(ed)
    assert totals[1] < totals[3]  # RV smaller than LV over the patients
    assert any((f.label.reshape(len(f.label), -1).max(axis=1) == 0).any()
               for _, fr in cardiac_patients for f in fr.values())  # fmt: skip


# --- prepared through the real preparers ----------------------------------------------------


def test_prepare_phantom_prostate_store(tmp_path):
    store = prepare_phantom("prostate", tmp_path / "p", cases=3, seed=2)
    again = PreparedStore.open(tmp_path / "p")
    assert store.meta["name"] == "phantom-prostate" and again.num_classes == 2
    assert again.image_size == (128, 128)
    imgs = np.asarray(again.images)
    assert imgs.dtype == np.float32 and imgs.min() >= 0 and imgs.max() <= 1
    ids = sorted(sum((again.case_ids(s) for s in ("train", "val", "test")), []))
    assert ids == ["Case00", "Case01", "Case02"]
    # 1 mm isotropic: about 72 slices per 72 mm slab.
    assert all(65 <= c["num_slices"] <= 75 for c in again.cases)
    fg = np.asarray(again.labels).reshape(len(imgs), -1).mean(axis=1)
    assert (fg == 0).any() and 0.02 < fg.max() < 0.35
    same = prepare_phantom("prostate", tmp_path / "q", cases=3, seed=2)
    assert np.array_equal(np.asarray(same.images), imgs)
    assert np.array_equal(np.asarray(same.labels), np.asarray(again.labels))


def test_prepare_phantom_cardiac_store(tmp_path):
    store = prepare_phantom("phantom-cardiac", tmp_path / "c", cases=3, seed=2)
    assert store.meta["name"] == "phantom-cardiac" and store.num_classes == 4
    assert store.image_size == (160, 160)
    assert sorted(c["phase"] for c in store.cases) == ["ED", "ED", "ED", "ES", "ES", "ES"]
    splits = json.loads((tmp_path / "c" / "splits.json").read_text())
    patients = {c["case"]: c["patient"] for c in store.cases}
    parts = [{patients[c] for c in splits[s]} for s in ("train", "val", "test")]
    assert sum(len(p) for p in parts) == len(set().union(*parts)) == 3  # no patient in two parts
    assert splits["train"] and (store.class_frequencies("train")[1:] > 0).all()
    with pytest.raises(FileExistsError):
        prepare_phantom("cardiac", tmp_path / "c", cases=1, seed=2)


def test_prepare_phantom_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        prepare_phantom("liver", tmp_path / "x")
    with pytest.raises(ValueError, match="cases"):
        prepare_phantom("prostate", tmp_path / "x", cases=0)
