"""Batched ROI crops for the context discriminator's local branch (SPEC §4, §5).

Both crops are one gather over the flattened maps, with index grids built from the boxes: no
Python loop over the samples. Boxes follow the package vocabulary: ``(B, 4)`` int64
``[y0, x0, y1, x1)`` half-open.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _gather_window(maps: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Gather ``maps[b, :, rows[b, i], cols[b, j]]`` for every sample in one call.

    Args:
        maps: class maps.
        rows: row index of each output row, already inside ``[0, H)``.
        cols: column index of each output column, already inside ``[0, W)``.

    Returns:
        The windows.

    Shape:
        - maps: ``(B, C, H, W)``; rows: ``(B, h)``; cols: ``(B, w)``.
        - Output: ``(B, C, h, w)``.
    """
    batch, channels, _, width = maps.shape
    h, w = rows.shape[1], cols.shape[1]
    flat_index = rows[:, :, None] * width + cols[:, None, :]  # (B, h, w)
    flat_index = flat_index.reshape(batch, 1, h * w).expand(batch, channels, h * w)
    windows = maps.reshape(batch, channels, -1).gather(2, flat_index)  # (B, C, h*w)
    return windows.view(batch, channels, h, w)


def centre_boxes(batch: int, size: int, height: int, width: int, device: torch.device) -> Tensor:
    """Boxes of ``size x size`` at the image centre, one per sample.

    Shape:
        - Output: ``(B, 4)`` int64.
    """
    y0, x0 = (height - size) // 2, (width - size) // 2
    box = torch.tensor([y0, x0, y0 + size, x0 + size], dtype=torch.int64, device=device)
    return box.expand(batch, 4).clone()


def grow_boxes(boxes: Tensor, min_size: int, height: int, width: int) -> Tensor:
    """Grow each box side to at least ``min_size`` about its centre, shifted inside the image.

    A side already at least ``min_size`` is left as it is. The grown side starts at
    ``centre - min_size // 2`` (``centre = (lo + hi) // 2``) and is then shifted, keeping its
    length, to lie inside the image (SPEC §5: boxes are kept inside, not cut).

    Args:
        boxes: ``[y0, x0, y1, x1)`` boxes inside the image.
        min_size: the smallest side length, at most ``min(height, width)``.
        height: image height.
        width: image width.

    Returns:
        The grown boxes.

    Shape:
        - boxes, output: ``(B, 4)`` int64.
    """
    lo, hi = boxes[:, :2], boxes[:, 2:]  # (B, 2) each, (y, x)
    limit = torch.tensor([height, width], dtype=boxes.dtype, device=boxes.device)
    short = (hi - lo) < min_size
    start = ((lo + hi) // 2 - min_size // 2).clamp(min=0)
    start = torch.minimum(start, limit - min_size)
    lo = torch.where(short, start, lo)
    hi = torch.where(short, start + min_size, hi)
    return torch.cat([lo, hi], dim=1)


def crop_static(maps: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Crop a ``size x size`` square centred on each box, shifted inside the image.

    The square starts at ``(y0 + y1) // 2 - size // 2`` (likewise for columns), which is the
    box's own corner for a static box of side ``size`` (SPEC §5); any other box gives the
    square about its centre.

    Args:
        maps: class maps (and optionally the image as one more channel).
        boxes: ``[y0, x0, y1, x1)`` boxes.
        size: side of the crop, at most ``min(H, W)``.

    Returns:
        The crops.

    Shape:
        - maps: ``(B, C, H, W)``; boxes: ``(B, 4)`` int64.
        - Output: ``(B, C, size, size)``.
    """
    height, width = maps.shape[-2:]
    limit = torch.tensor([height - size, width - size], dtype=boxes.dtype, device=boxes.device)
    start = (boxes[:, :2] + boxes[:, 2:]) // 2 - size // 2  # (B, 2)
    start = torch.minimum(start.clamp(min=0), limit)
    offsets = torch.arange(size, device=boxes.device)
    rows = start[:, 0:1] + offsets  # (B, size)
    cols = start[:, 1:2] + offsets  # (B, size)
    return _gather_window(maps, rows, cols)


def crop_padded(
    maps: Tensor, boxes: Tensor, shape: tuple[int, int] | None = None
) -> tuple[Tensor, Tensor]:
    """Crop each box into the top-left corner of one zero-padded batch tensor.

    The tensor is as large as the batch's largest box height and width. Unless the caller
    passes that ``shape``, reading it is a host-device synchronisation (a tensor shape must be
    known on the host). Padding to the whole image instead would avoid it, but would run the
    unpooled convolutions on whole images (for ~50 px boxes in a 128 px image, 4x the work:
    ``benchmarks/bench_gan.py``), which costs far more than the sync.

    Args:
        maps: class maps (and optionally the image as one more channel).
        boxes: ``[y0, x0, y1, x1)`` boxes inside the image.
        shape: ``(h_max, w_max)``, the largest box height and width, when already known.

    Returns:
        ``(crops, sizes)``: the crops, zero outside each sample's box, and the box heights and
        widths.

    Shape:
        - maps: ``(B, C, H, W)``; boxes: ``(B, 4)`` int64.
        - crops: ``(B, C, h_max, w_max)``; sizes: ``(B, 2)`` int64.
    """
    height, width = maps.shape[-2:]
    sizes = boxes[:, 2:] - boxes[:, :2]  # (B, 2)
    if shape is None:
        shape = tuple(int(v) for v in sizes.amax(dim=0).tolist())
    h_max, w_max = shape
    row_off = torch.arange(h_max, device=boxes.device)
    col_off = torch.arange(w_max, device=boxes.device)
    rows = (boxes[:, 0:1] + row_off).clamp(max=height - 1)  # (B, h_max)
    cols = (boxes[:, 1:2] + col_off).clamp(max=width - 1)  # (B, w_max)
    inside = (row_off < sizes[:, 0:1])[:, :, None] & (col_off < sizes[:, 1:2])[:, None, :]
    crops = _gather_window(maps, rows, cols) * inside[:, None].to(maps.dtype)
    return crops, sizes


def size_groups(sizes: Sequence[Sequence[int]], max_groups: int) -> list[list[int]]:
    """Split a batch of box sizes into at most ``max_groups`` groups of least padded area.

    Padding every crop of a batch to its largest box wastes work on the small ones; padding
    each group to its own largest box wastes less. The boxes are ordered by area and cut into
    contiguous runs; a run costs ``len(run) * max_h * max_w`` and the cuts minimise the total
    (exact dynamic programme over the ordered boxes, O(max_groups * B^2) on the host).

    Args:
        sizes: ``(h, w)`` per box, on the host.
        max_groups: the most groups to return (1: the whole batch in one group).

    Returns:
        Groups of batch indices, each in increasing area; together a permutation of
        ``range(len(sizes))``.
    """
    if max_groups < 1:
        raise ValueError(f"max_groups must be >= 1, got {max_groups}")
    order = sorted(range(len(sizes)), key=lambda i: (sizes[i][0] * sizes[i][1], i))
    n = len(order)
    # cost[i][j]: the run order[i:j] padded to its largest height and width.
    cost = [[0] * (n + 1) for _ in range(n + 1)]
    for i in range(n):
        h = w = 0
        for j in range(i + 1, n + 1):
            h, w = max(h, sizes[order[j - 1]][0]), max(w, sizes[order[j - 1]][1])
            cost[i][j] = (j - i) * h * w
    # best[j]: least cost of order[:j] in at most k runs (k = 1, 2, ...); cuts[k - 1][j]: where
    # the last of those runs starts.
    best = cost[0][:]
    cuts = [[0] * (n + 1)]
    for _ in range(1, max_groups):
        row, cut = cost[0][:], [0] * (n + 1)
        for j in range(1, n + 1):
            for i in range(1, j):
                if best[i] + cost[i][j] < row[j]:
                    row[j], cut[j] = best[i] + cost[i][j], i
        best = row
        cuts.append(cut)
    groups: list[list[int]] = []
    stop = n
    for cut in reversed(cuts):
        if stop == 0:
            break
        start = cut[stop]
        groups.append(order[start:stop])
        stop = start
    return groups[::-1]
