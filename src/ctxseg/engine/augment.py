"""Batched on-device augmentation with per-epoch reproducible draws (off in the paper, SPEC §7).

The same transforms as :class:`ctxseg.data.dataset.SliceDataset`: a random horizontal and
vertical flip, a random multiple of 90 degrees of rotation (0 or 180 for non-square slices) and
an intensity scale in ``[1 - intensity, 1 + intensity]`` clipped to [0, 1]. The parameters of a
whole epoch are drawn up front from the epoch's seeded generator, so an epoch's augmentation is
a function of ``(seed, epoch)`` alone and a resumed run sees the same samples.
"""

from __future__ import annotations

import torch

__all__ = ["apply_augment", "draw_augment"]


def draw_augment(n: int, generator: torch.Generator, intensity: float = 0.1) -> torch.Tensor:
    """Draw the augmentation parameters of ``n`` samples.

    Returns:
        float32 ``(n, 4)``: flip rows (0/1), flip columns (0/1), quarter turns k (0-3), scale.
    """
    if not 0 <= intensity < 1:
        raise ValueError(f"intensity must be in [0, 1), got {intensity}")
    flips = (torch.rand(n, 2, generator=generator) < 0.5).float()  # (n, 2)
    turns = torch.randint(4, (n, 1), generator=generator).float()  # (n, 1)
    scale = 1 + intensity * (2 * torch.rand(n, 1, generator=generator) - 1)  # (n, 1)
    return torch.cat([flips, turns, scale], dim=1)


def apply_augment(
    image: torch.Tensor, target: torch.Tensor, params: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply per-sample flips, quarter turns and intensity scales, without a host sync.

    Shape:
        image: ``(B, 1, H, W)``; target: ``(B, H, W)``; params: ``(B, 4)`` from
        :func:`draw_augment`. Returns tensors of the input shapes.
    """
    square = image.shape[-1] == image.shape[-2]
    target = target.unsqueeze(1)  # (B, 1, H, W): transformed exactly like the image

    def where(flag: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.where(flag.view(-1, 1, 1, 1).bool(), a, b)

    flip_rows, flip_cols, turns = params[:, 0], params[:, 1], params[:, 2]
    image = where(flip_rows, image.flip(-2), image)
    target = where(flip_rows, target.flip(-2), target)
    image = where(flip_cols, image.flip(-1), image)
    target = where(flip_cols, target.flip(-1), target)
    if square:
        for k in (1, 2, 3):
            image = where(turns == k, torch.rot90(image, k, (-2, -1)), image)
            target = where(turns == k, torch.rot90(target, k, (-2, -1)), target)
    else:  # a quarter turn would change the size: odd k act as a half turn
        half = (turns % 2) == 1
        image = where(half, torch.rot90(image, 2, (-2, -1)), image)
        target = where(half, torch.rot90(target, 2, (-2, -1)), target)
    image = (image * params[:, 3].view(-1, 1, 1, 1)).clamp(0.0, 1.0)
    return image.contiguous(), target.squeeze(1).contiguous()
