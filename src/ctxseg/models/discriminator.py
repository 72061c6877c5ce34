"""The plain GAN discriminator and the context discriminator of Seg-GLGAN (SPEC §4).

Paper section 2.2.2, confirmed by the authors' code: a feature stack of three *unpadded*
convolutions (9x9 -> 32, 5x5 -> 64, 5x5 -> 64), each followed by LeakyReLU(0.2) and 2x2 average
pooling, no normalisation.

- Plain discriminator: stack -> flatten -> FC 512 -> FC 64 -> FC 1.
- Context discriminator: a global branch on the whole map (stack -> flatten -> FC 512 -> FC 64)
  and a local branch on the region of interest, concatenated into ``Linear(128, 1)``.
  The local branch is either *static* (an S x S crop through the same FC branch) or *dynamic*
  (the three convolutions without pooling on a box of any size, then global average pooling).

Samples without an ROI (``has_roi`` False, a slice with no foreground): the local branch still
runs on a fixed box at the image centre (S x S static, ``min_roi`` square dynamic) so that the
batch stays one tensor, but its 64 features are replaced by zeros. The score of such a sample
is therefore the global branch's alone, as the context loss leaves such a sample out of its
ROI term (SPEC §5).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ctxseg.models.roi_crop import (
    centre_boxes,
    crop_padded,
    crop_static,
    grow_boxes,
    size_groups,
)

#: Smallest input side whose pooled stack output is non-empty (40 -> 32 -> 16 -> 12 -> 6 -> 2 -> 1).
MIN_POOLED_SIZE = 40
#: Pixels lost by the three unpadded convolutions (9 - 1) + (5 - 1) + (5 - 1).
CONV_SHRINK = 16
FEATURES = 64


def _pooled_size(n: int) -> int:
    """Side length after the pooled feature stack: conv 9, pool, conv 5, pool, conv 5, pool."""
    n = (n - 8) // 2
    n = (n - 4) // 2
    return (n - 4) // 2


def _pair(size: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(size, int):
        pair = (size, size)
    elif isinstance(size, Sequence) and len(size) == 2:
        pair = (int(size[0]), int(size[1]))
    else:
        raise ValueError(f"{name} must be an int or (height, width), got {size!r}")
    if min(pair) < MIN_POOLED_SIZE:
        raise ValueError(
            f"{name} {size!r} is too small for the discriminator: each side needs at least "
            f"{MIN_POOLED_SIZE} px (three unpadded convolutions and three 2x2 poolings)"
        )
    return pair


class FeatureStack(nn.Module):
    """Three unpadded convolutions with LeakyReLU(0.2), each optionally followed by 2x2 average
    pooling (SPEC §4).

    Shape:
        - Input: ``(B, in_channels, H, W)``.
        - Output: ``(B, 64, h, w)`` with ``h = _pooled_size(H)`` when pooled, else ``H - 16``.
    """

    def __init__(self, in_channels: int, pool: bool = True) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        layers: list[nn.Module] = []
        for c_in, c_out, k in ((in_channels, 32, 9), (32, 64, 5), (64, FEATURES, 5)):
            layers += [nn.Conv2d(c_in, c_out, k), nn.LeakyReLU(0.2)]
            if pool:
                layers.append(nn.AvgPool2d(2))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class FCBranch(nn.Module):
    """Pooled feature stack -> flatten -> FC 512 -> FC 64, LeakyReLU(0.2) after each FC.

    The global branch (flatten 9216 at 128 px, 16384 at 160 px) and the static local branch
    (256 for a 50 px ROI, 576 for 60 px).

    Shape:
        - Input: ``(B, in_channels, H, W)`` with ``(H, W) == size``.
        - Output: ``(B, 64)``.
    """

    def __init__(self, in_channels: int, size: int | Sequence[int]) -> None:
        super().__init__()
        height, width = _pair(size, "size")
        self.flat_features = FEATURES * _pooled_size(height) * _pooled_size(width)
        self.stack = FeatureStack(in_channels, pool=True)
        self.head = nn.Sequential(
            nn.Linear(self.flat_features, 512),
            nn.LeakyReLU(0.2),
            nn.Linear(512, FEATURES),
            nn.LeakyReLU(0.2),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.stack(x).flatten(1))  # (B, 64*h*w) -> (B, 64)


class GAPBranch(nn.Module):
    """Dynamic local branch: unpooled feature stack, then the mean over each sample's valid
    output positions (SPEC §4, "global average pooling to handle ROI with different
    dimensions").

    The crops of a batch are zero-padded to one tensor. An output position is *valid* for a
    sample when its receptive field (17 x 17 px) lies inside that sample's crop, i.e. in the
    top-left ``(h - 16) x (w - 16)`` corner, so the result equals running the branch on each
    crop alone.

    Shape:
        - crops: ``(B, in_channels, h_max, w_max)``; sizes: ``(B, 2)`` int64, every entry
          in ``[17, h_max]`` / ``[17, w_max]``.
        - Output: ``(B, 64)``.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.stack = FeatureStack(in_channels, pool=False)

    def forward(self, crops: Tensor, sizes: Tensor) -> Tensor:
        features = self.stack(crops)  # (B, 64, h_max - 16, w_max - 16)
        out_h, out_w = features.shape[-2:]
        valid = sizes - CONV_SHRINK  # (B, 2)
        rows = torch.arange(out_h, device=crops.device) < valid[:, 0:1]  # (B, out_h)
        cols = torch.arange(out_w, device=crops.device) < valid[:, 1:2]  # (B, out_w)
        mask = (rows[:, :, None] & cols[:, None, :]).to(features.dtype)  # (B, out_h, out_w)
        total = torch.einsum("bchw,bhw->bc", features, mask)  # (B, 64)
        return total / valid.prod(dim=1, keepdim=True).to(features.dtype)


class PlainDiscriminator(nn.Module):
    """The GAN discriminator: global branch -> FC 1 (SPEC §4).

    Shape:
        - maps: ``(B, in_channels, H, W)``; boxes and has_roi are ignored.
        - Output: ``(B,)`` logits.
    """

    def __init__(self, in_channels: int, image_size: int | Sequence[int]) -> None:
        super().__init__()
        self.image_size = _pair(image_size, "image_size")
        self.global_branch = FCBranch(in_channels, self.image_size)
        self.fc = nn.Linear(FEATURES, 1)

    def forward(
        self, maps: Tensor, boxes: Tensor | None = None, has_roi: Tensor | None = None
    ) -> Tensor:
        return self.fc(self.global_branch(maps)).squeeze(1)


class ContextDiscriminator(nn.Module):
    """The context discriminator of Seg-GLGAN: concat(local 64, global 64) -> Linear(128, 1).

    Args:
        in_channels: channels of the maps (classes, plus one when the image is given too).
        image_size: ``H`` or ``(H, W)`` of the maps.
        roi: ``"static"`` (an ``roi_size`` square through an FC branch) or ``"dynamic"`` (boxes
            of any size through the unpooled stack and global average pooling).
        roi_size: side of the static ROI (50 PROMISE12, 60 ACDC in the paper).
        min_roi: dynamic boxes are grown to at least this side (the authors forced 20; the
            three unpadded convolutions need 17).
        max_groups: dynamic ROI, the most padded passes of the local branch per batch (boxes
            grouped by size, see :meth:`_dynamic_features`); 1 pads the whole batch to its
            largest box. The result does not depend on it, only the speed.

    Shape:
        - maps: ``(B, in_channels, H, W)``; boxes: ``(B, 4)`` int64 ``[y0, x0, y1, x1)`` from
          the *target*; has_roi: ``(B,)`` bool.
        - Output: ``(B,)`` logits.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int | Sequence[int],
        roi: str = "static",
        roi_size: int | None = None,
        min_roi: int = 20,
        max_groups: int = 3,
    ) -> None:
        super().__init__()
        if max_groups < 1:
            raise ValueError(f"max_groups must be >= 1, got {max_groups}")
        self.image_size = _pair(image_size, "image_size")
        self.roi = roi
        self.global_branch = FCBranch(in_channels, self.image_size)
        if roi == "static":
            if roi_size is None or not MIN_POOLED_SIZE <= roi_size <= min(self.image_size):
                raise ValueError(
                    f"roi_size must be an int in [{MIN_POOLED_SIZE}, {min(self.image_size)}] "
                    f"for a static ROI in a {self.image_size} image, got {roi_size!r}"
                )
            self.roi_size = roi_size
            self.local_branch: nn.Module = FCBranch(in_channels, roi_size)
        elif roi == "dynamic":
            if not CONV_SHRINK + 1 <= min_roi <= min(self.image_size):
                raise ValueError(
                    f"min_roi must be in [{CONV_SHRINK + 1}, {min(self.image_size)}] (the three "
                    f"unpadded convolutions need {CONV_SHRINK + 1} px), got {min_roi!r}"
                )
            self.roi_size = min_roi
            self.local_branch = GAPBranch(in_channels)
        else:
            raise ValueError(f"roi must be 'static' or 'dynamic', got {roi!r}")
        self.min_roi = min_roi
        self.max_groups = max_groups
        self.fc = nn.Linear(2 * FEATURES, 1)

    def local_features(self, maps: Tensor, boxes: Tensor, has_roi: Tensor) -> Tensor:
        """The local branch's 64 features; zeros for samples without an ROI.

        Shape:
            - maps: ``(B, C, H, W)``; boxes: ``(B, 4)``; has_roi: ``(B,)``.
            - Output: ``(B, 64)``.
        """
        batch = maps.shape[0]
        height, width = maps.shape[-2:]
        fallback = centre_boxes(batch, self.roi_size, height, width, boxes.device)
        boxes = torch.where(has_roi[:, None], boxes.to(torch.int64), fallback)
        if self.roi == "static":
            features = self.local_branch(crop_static(maps, boxes, self.roi_size))
        else:
            features = self._dynamic_features(maps, grow_boxes(boxes, self.min_roi, height, width))
        return features * has_roi[:, None].to(features.dtype)

    def _dynamic_features(self, maps: Tensor, boxes: Tensor) -> Tensor:
        """The GAP branch over boxes of any size, in at most ``max_groups`` padded passes.

        The box sizes are read to the host once (the one host-device synchronisation of the
        dynamic discriminator: tensor shapes must be known there). With ``max_groups`` 1 the
        whole batch is padded to its largest box and runs in one pass; with more, boxes of
        similar area share a pass padded to their own largest box, which saves the unpooled
        convolutions much of the padding (:func:`size_groups`). Either way each sample is
        averaged over its own valid outputs only, so the result is the same.

        Shape:
            - maps: ``(B, C, H, W)``; boxes: ``(B, 4)``, sides at least 17.
            - Output: ``(B, 64)``.
        """
        sizes = (boxes[:, 2:] - boxes[:, :2]).tolist()  # host sync: the crop shapes
        groups = size_groups(sizes, self.max_groups)
        if len(groups) == 1:
            shape = (max(h for h, _ in sizes), max(w for _, w in sizes))
            return self.local_branch(*crop_padded(maps, boxes, shape))
        features = []
        for group in groups:
            index = torch.tensor(group, device=maps.device)
            shape = (max(sizes[i][0] for i in group), max(sizes[i][1] for i in group))
            crops, crop_sizes = crop_padded(maps[index], boxes[index], shape)
            features.append(self.local_branch(crops, crop_sizes))  # (b_g, 64)
        order = [i for group in groups for i in group]
        inverse = torch.empty(len(order), dtype=torch.int64)
        inverse[order] = torch.arange(len(order))
        return torch.cat(features)[inverse.to(maps.device)]  # (B, 64) in batch order

    def forward(self, maps: Tensor, boxes: Tensor, has_roi: Tensor) -> Tensor:
        if tuple(maps.shape[-2:]) != self.image_size:
            raise ValueError(
                f"maps of size {tuple(maps.shape[-2:])} given to a discriminator built for "
                f"{self.image_size}"
            )
        local = self.local_features(maps, boxes, has_roi)  # (B, 64)
        global_ = self.global_branch(maps)  # (B, 64)
        return self.fc(torch.cat([local, global_], dim=1)).squeeze(1)


def create_discriminator(
    kind: str,
    num_classes: int,
    image_size: int | Sequence[int],
    roi: str = "static",
    roi_size: int | None = None,
    with_image: bool = False,
    min_roi: int = 20,
) -> nn.Module:
    """Build a discriminator by name (SPEC §4).

    Args:
        kind: ``"plain"`` (GAN) or ``"context"`` (Seg-GLGAN).
        num_classes: channels of the class maps (softmax or one-hot).
        image_size: ``H`` or ``(H, W)``; fixes the global flatten size.
        roi: ``"static"`` or ``"dynamic"`` (context only).
        roi_size: static ROI side (context, static only).
        with_image: the image is concatenated to the maps as one more channel.
        min_roi: dynamic ROI minimum side.

    Returns:
        A module called as ``disc(maps, boxes, has_roi) -> logits (B,)``.

    Raises:
        ValueError: an unknown kind or ROI, or sizes the network cannot take.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    in_channels = num_classes + int(with_image)
    if kind == "plain":
        return PlainDiscriminator(in_channels, image_size)
    if kind == "context":
        return ContextDiscriminator(in_channels, image_size, roi, roi_size, min_roi)
    raise ValueError(f"kind must be 'plain' or 'context', got {kind!r}")
