"""Preprocessing: resampled geometry, normalisation, crop / pad, and restore_label round trips."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from ctxseg.data.preprocess import (
    crop_or_pad,
    make_params,
    normalize_intensity,
    preprocess_image,
    preprocess_label,
    restore_label,
)


def volume(array_zyx, spacing_xyz, origin=(0.0, 0.0, 0.0), direction=None):
    image = sitk.GetImageFromArray(array_zyx)
    image.SetSpacing(spacing_xyz)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    return image


def test_resampled_shape_spacing_and_crop_pad():
    rng = np.random.default_rng(0)
    # (z, y, x) = (5, 30, 40) at (3.0, 0.5, 0.5) mm -> 1 mm: (15, 15, 20).
    image = volume(rng.random((5, 30, 40)).astype(np.float32), (0.5, 0.5, 3.0))
    params = make_params((16, 24), spacing=(1.0, 1.0, 1.0))
    array, geometry = preprocess_image(image, params)
    assert array.shape == (15, 16, 24) and array.dtype == np.float32
    assert geometry["resampled"]["size"] == [20, 15, 15]
    assert geometry["prepared_spacing"] == [1.0, 1.0, 1.0]
    # 15 rows padded to 16: start (15 - 16) // 2 = -1; 20 columns to 24: start -2.
    assert geometry["crop_start"] == [-1, -2]
    assert (array[:, 0, :] == 0).all() and (array[:, :, :2] == 0).all()
    assert (array[:, :, 22:] == 0).all()
    assert array.min() >= 0.0 and array.max() == pytest.approx(1.0)


def test_linear_image_and_nearest_label():
    # Intensity = x position in mm on a 0.5 mm grid: linear resampling to 1 mm is exact.
    x_mm = np.arange(40) * 0.5
    ramp = np.broadcast_to(x_mm, (2, 6, 40)).astype(np.float32).copy()
    params = make_params(
        (6, 20), spacing=(None, None, 1.0), lower_percentile=0, upper_percentile=100
    )
    array, geometry = preprocess_image(volume(ramp, (0.5, 1.0, 2.0)), params)
    assert array.shape == (2, 6, 20) and geometry["prepared_spacing"] == [2.0, 1.0, 1.0]
    np.testing.assert_allclose(array[1, 3], np.arange(20) / 19.0, atol=1e-6)
    label = np.zeros((2, 6, 40), np.uint8)
    label[:, 2:4, 10:25] = 2
    out = preprocess_label(volume(label, (0.5, 1.0, 2.0)), params)
    assert set(np.unique(out)) == {0, 2}  # nearest neighbour: no blended values
    # Columns 10..24 at 0.5 mm cover 5.0-12.0 mm -> 1 mm columns 5..12.
    np.testing.assert_array_equal(np.flatnonzero(out[0, 2]), np.arange(5, 13))


def test_normalize_intensity_percentiles_by_hand():
    array = np.arange(1000, dtype=np.float32)
    array[-1] = 1e6  # one outlier voxel
    out = normalize_intensity(array, 0.5, 99.5)
    lo, hi = np.percentile(array, [0.5, 99.5])
    assert lo == pytest.approx(4.995) and hi == pytest.approx(994.005)
    assert out[500] == pytest.approx((500 - lo) / (hi - lo))
    assert out[0] == 0.0 and out[-1] == 1.0 and out.dtype == np.float32
    with pytest.raises(ValueError, match="constant intensity"):
        normalize_intensity(np.full(10, 3.0), 0.5, 99.5)


def test_crop_or_pad_by_hand():
    array = np.arange(2 * 5 * 4).reshape(2, 5, 4)
    out, starts = crop_or_pad(array, (3, 6))
    assert starts == [1, -1]
    np.testing.assert_array_equal(out[:, :, 1:5], array[:, 1:4, :])
    assert (out[:, :, 0] == 0).all() and (out[:, :, 5] == 0).all()


def test_slice_axis_moves_to_front():
    rng = np.random.default_rng(1)
    image = volume(rng.random((6, 7, 8)).astype(np.float32), (1.0, 1.0, 1.0))
    params = make_params((6, 7), slice_axis=2)
    array, geometry = preprocess_image(image, params)
    assert array.shape == (8, 6, 7) and geometry["axes"] == [2, 0, 1]


@pytest.mark.parametrize(
    ("spacing_xyz", "target"),
    [
        ((1.5, 1.5, 10.0), None),
        ((1.0, 1.0, 2.0), (1.0, 1.0, 1.0)),
        ((0.5, 1.0, 3.0), (1.5, 1.0, 0.5)),
    ],
)
def test_restore_label_round_trip(spacing_xyz, target):
    rng = np.random.default_rng(2)
    label = rng.integers(0, 4, (4, 30, 22)).astype(np.uint8)  # (z, y, x)
    direction = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    src = volume(label, spacing_xyz, origin=(-5.0, 3.0, 12.5), direction=direction)
    image = volume(
        rng.random((4, 30, 22)).astype(np.float32), spacing_xyz, (-5.0, 3.0, 12.5), direction
    )
    params = make_params((16, 16), spacing=target)
    _, geometry = preprocess_image(image, params)
    prepared = preprocess_label(src, params)
    restored = restore_label(prepared, geometry)
    assert restored.GetSize() == src.GetSize()
    np.testing.assert_allclose(restored.GetSpacing(), src.GetSpacing())
    np.testing.assert_allclose(restored.GetOrigin(), src.GetOrigin())
    np.testing.assert_allclose(restored.GetDirection(), src.GetDirection())
    back = sitk.GetArrayFromImage(restored)
    # The window kept by the crop, in source voxels: physical mm of the resampled crop.
    res_spacing = geometry["resampled"]["spacing"]
    sy, sx = geometry["crop_start"]
    ys = np.arange(30) * spacing_xyz[1] / res_spacing[1]
    xs = np.arange(22) * spacing_xyz[0] / res_spacing[0]
    inside_y = (np.round(ys) >= sy) & (np.round(ys) < sy + 16)
    inside_x = (np.round(xs) >= sx) & (np.round(xs) < sx + 16)
    inside = inside_y[:, None] & inside_x[None, :]
    if target is None or all(
        t is None or s / t == round(s / t) for s, t in zip(spacing_xyz, target[::-1], strict=True)
    ):
        # Same or integer-upsampled grid: exact inside the crop, background outside.
        np.testing.assert_array_equal(back[:, inside], label[:, inside])
        assert (back[:, ~inside] == 0).all()
    else:
        # Downsampled in-plane: nearest neighbour keeps most voxels, nothing outside.
        assert (back[:, inside] == label[:, inside]).mean() > 0.4
        assert (back[:, ~inside] == 0).all()


def test_restore_label_checks_shape():
    image = volume(np.zeros((2, 4, 4), np.float32) + np.arange(4), (1.0, 1.0, 1.0))
    _, geometry = preprocess_image(image, make_params((4, 4)))
    with pytest.raises(ValueError, match="prepared shape"):
        restore_label(np.zeros((3, 4, 4), np.uint8), geometry)


def test_make_params_validation():
    with pytest.raises(ValueError, match="size"):
        make_params((0, 4))
    with pytest.raises(ValueError, match="spacing"):
        make_params((4, 4), spacing=(1.0, -1.0, 1.0))
    with pytest.raises(ValueError, match="slice_axis"):
        make_params((4, 4), slice_axis=3)
    with pytest.raises(ValueError, match="lower < upper"):
        make_params((4, 4), lower_percentile=60, upper_percentile=50)
