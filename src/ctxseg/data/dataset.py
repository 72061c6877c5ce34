"""A ``torch`` Dataset over the slices of one split of a prepared store."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from ctxseg.data.store import PreparedStore


class SliceDataset(Dataset):
    """2-D slices of a prepared store's split, optionally augmented.

    The paper trains without augmentation (SPEC §7), so it is off by default. When on, each
    sample gets a random horizontal and vertical flip, a random multiple of 90 degrees of
    rotation (0 or 180 only when the slice is not square) and an intensity scale drawn from
    ``[1 - intensity, 1 + intensity]`` (then clipped to [0, 1]); the geometric part is applied
    identically to image and target. Randomness comes from ``torch``'s generator, so
    ``torch.manual_seed`` and the DataLoader's per-worker seeding make it reproducible.

    Args:
        store: An open :class:`PreparedStore` or the path of one.
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
        foreground_only: Keep only slices with foreground (the paper's slice counts).
        augment: Enable the augmentation above.
        intensity: Half-width of the intensity scale range.

    Shape:
        Each item is ``{"image": (1, H, W) float32, "target": (H, W) int64, "row": int}``.
    """

    def __init__(
        self,
        store: PreparedStore | str | os.PathLike,
        split: str,
        foreground_only: bool = False,
        augment: bool = False,
        intensity: float = 0.1,
    ) -> None:
        if not 0 <= intensity < 1:
            raise ValueError(f"intensity must be in [0, 1), got {intensity}")
        self.store = store if isinstance(store, PreparedStore) else PreparedStore.open(store)
        self.split = split
        self.rows = self.store.indices(split, foreground_only=foreground_only)
        self.augment = augment
        self.intensity = intensity

    def __len__(self) -> int:
        return int(self.rows.size)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        row = int(self.rows[index])
        image = torch.from_numpy(np.array(self.store.images[row], dtype=np.float32))  # (H, W)
        target = torch.from_numpy(self.store.labels[row].astype(np.int64))  # (H, W)
        if self.augment:
            image, target = self._augment(image, target)
        return {"image": image.unsqueeze(0), "target": target, "row": row}

    def _augment(self, image: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
        flips, rot, scale = torch.rand(2), torch.randint(4, ()), torch.rand(())
        dims = []
        if flips[0] < 0.5:
            dims.append(0)
        if flips[1] < 0.5:
            dims.append(1)
        if dims:
            image, target = image.flip(dims), target.flip(dims)
        k = int(rot)
        if image.shape[0] != image.shape[1]:
            k = 2 * (k % 2)  # a quarter turn would change the slice size
        if k:
            image, target = torch.rot90(image, k, (0, 1)), torch.rot90(target, k, (0, 1))
        factor = 1 + self.intensity * (2 * float(scale) - 1)
        image = (image * factor).clamp_(0.0, 1.0)
        return image.contiguous(), target.contiguous()
