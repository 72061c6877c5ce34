"""SliceDataset: items, shapes, split selection and augmentation consistency."""

from __future__ import annotations

import numpy as np
import torch

from ctxseg.data.dataset import SliceDataset
from ctxseg.data.store import PreparedCase, PreparedStore, write_store


def make_store(tmp_path, size=(12, 12)):
    rng = np.random.default_rng(0)
    cases = []
    for i in range(3):
        image = rng.random((4, *size), dtype=np.float32)
        label = np.zeros((4, *size), np.uint8)
        label[2, 1:4, 2:9] = 1 + i % 2
        cases.append(PreparedCase(f"c{i}", f"p{i}", None, image, label, (1.0, 1.0, 1.0), {}))
    write_store(
        tmp_path / "s",
        cases,
        {"name": "t", "labels": {"0": "bg", "1": "a", "2": "b"}},
        {"seed": 0, "train": ["c0", "c1"], "val": ["c2"], "test": []},
    )
    return PreparedStore.open(tmp_path / "s")


def test_items_match_store(tmp_path):
    store = make_store(tmp_path)
    ds = SliceDataset(store, "train")
    assert len(ds) == 8 and len(SliceDataset(store, "train", foreground_only=True)) == 2
    item = ds[5]
    assert item["row"] == 5
    assert item["image"].shape == (1, 12, 12) and item["image"].dtype == torch.float32
    assert item["target"].shape == (12, 12) and item["target"].dtype == torch.int64
    np.testing.assert_array_equal(item["image"][0].numpy(), store.images[5])
    np.testing.assert_array_equal(item["target"].numpy(), store.labels[5])
    val = SliceDataset(tmp_path / "s", "val", foreground_only=True)
    assert [val[i]["row"] for i in range(len(val))] == [10]


def test_augmentation_moves_image_and_target_together(tmp_path):
    store = make_store(tmp_path)
    ds = SliceDataset(store, "train", foreground_only=True, augment=True, intensity=0.2)
    torch.manual_seed(0)
    seen = set()
    for _ in range(30):
        item = ds[0]
        image, target = item["image"][0].numpy(), item["target"].numpy()
        raw_img, raw_lab = np.asarray(store.images[2]), np.asarray(store.labels[2])
        # Find the dihedral transform that maps the raw target onto the augmented one ...
        match = None
        for k in range(4):
            for flip in (False, True):
                t = np.rot90(raw_lab.T if flip else raw_lab, k)
                if np.array_equal(t, target):
                    match = (k, flip)
        assert match is not None
        k, flip = match
        moved = np.rot90(raw_img.T if flip else raw_img, k)
        # ... and check the image went through the same one, up to the intensity scale.
        ratio = image / np.maximum(moved, 1e-6)
        inside = (moved > 0.05) & (image < 0.999)
        assert np.allclose(ratio[inside], ratio[inside][0], atol=1e-4)
        assert 0.8 - 1e-6 <= ratio[inside][0] <= 1.2 + 1e-6
        seen.add(match)
    assert len(seen) >= 4  # flips and rotations really vary


def test_non_square_slices_keep_their_size(tmp_path):
    store = make_store(tmp_path, size=(8, 12))
    ds = SliceDataset(store, "train", augment=True)
    torch.manual_seed(1)
    assert all(ds[i % len(ds)]["image"].shape == (1, 8, 12) for i in range(20))


def test_augment_off_is_identity(tmp_path):
    store = make_store(tmp_path)
    ds = SliceDataset(store, "val")
    np.testing.assert_array_equal(ds[2]["image"][0].numpy(), store.images[10])
