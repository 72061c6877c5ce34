"""Regions of interest around the object in a target label map (SPEC §5).

Both functions work on the whole batch at once on the target's device, with no Python loop
over samples and no host-device synchronisation, so they can sit inside a training step.

Box convention: ``boxes`` (B, 4) int64 ``[y0, x0, y1, x1)``, half-open, in pixels.
"""

from __future__ import annotations

import torch

__all__ = ["ROI_MODES", "box_mask", "roi_boxes"]

ROI_MODES = ("static", "dynamic")


def _shift_inside(start: torch.Tensor, length: int, extent: int) -> torch.Tensor:
    """Shift intervals ``[start, start + length)`` so they lie inside ``[0, extent)``.

    ``length <= extent`` is required; the interval keeps its length.
    """
    return start.clamp(min=0, max=extent - length)


def _static_boxes(
    fg: torch.Tensor, size: int, rows: torch.Tensor, cols: torch.Tensor
) -> torch.Tensor:
    """S x S boxes centred on the truncated foreground centroid, shifted inside the image."""
    _, height, width = fg.shape
    count = fg.sum(dim=(1, 2))  # (B,)
    row_sum = (fg.sum(dim=2) * rows).sum(dim=1)  # (B,) sum of the row index of every fg pixel
    col_sum = (fg.sum(dim=1) * cols).sum(dim=1)  # (B,)
    safe = count.clamp(min=1)
    # Integer floor division == truncation of the (non-negative) mean, as the authors' int().
    cy = torch.where(count > 0, row_sum // safe, torch.full_like(count, height // 2))
    cx = torch.where(count > 0, col_sum // safe, torch.full_like(count, width // 2))
    y0 = _shift_inside(cy - size // 2, size, height)
    x0 = _shift_inside(cx - size // 2, size, width)
    return torch.stack([y0, x0, y0 + size, x0 + size], dim=1)  # (B, 4)


def _dynamic_interval(
    present: torch.Tensor, index: torch.Tensor, margin: int, min_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One axis of the dynamic box: tight extent + margin, clipped, grown to ``min_size``.

    Args:
        present: (B, N) bool, whether the line holds foreground.
        index: (N,) int64 line indices.
        margin: pixels added on both sides.
        min_size: minimum length.

    Returns:
        ``start, stop`` (B,) each; lines without any foreground give ``[0, N)``.
    """
    extent = present.shape[1]
    lo = torch.where(present, index, extent).amin(dim=1)  # (B,) first foreground line
    hi = torch.where(present, index, -1).amax(dim=1) + 1  # (B,) one past the last one
    start = (lo - margin).clamp(min=0)
    stop = (hi + margin).clamp(max=extent)
    # Grow symmetrically (the odd pixel goes after) to the minimum size, then shift the grown
    # interval back inside the image so that it keeps min(min_size, extent) pixels.
    need = (min_size - (stop - start)).clamp(min=0)
    start = start - need // 2
    stop = stop + (need - need // 2)
    start, stop = start + (-start).clamp(min=0), stop + (-start).clamp(min=0)
    over = (stop - extent).clamp(min=0)
    start, stop = (start - over).clamp(min=0), stop - over
    empty = ~present.any(dim=1)
    start = torch.where(empty, torch.zeros_like(start), start)
    stop = torch.where(empty, torch.full_like(stop, extent), stop)
    return start, stop


def roi_boxes(
    target: torch.Tensor,
    mode: str,
    size: int | None = None,
    margin: int = 0,
    min_size: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample ROI boxes from a batch of label maps (SPEC §5).

    Foreground is every label > 0 (all classes merged).

    - ``"static"``: a ``size`` x ``size`` square whose rows are
      ``[cy - size // 2, cy - size // 2 + size)`` (columns likewise), where ``(cy, cx)`` is the
      integer-truncated mean row and column of the foreground. A box that would leave the image
      is shifted inside it, keeping its size (the authors did not clamp).
    - ``"dynamic"``: the tight bounding box of the foreground, enlarged by ``margin`` on every
      side and clipped to the image, then grown symmetrically to at least ``min_size`` per side;
      a grown box that would leave the image is shifted inside it, so every box is at least
      ``min(min_size, H) x min(min_size, W)``.

    A slice without foreground has ``has_roi`` False and a harmless placeholder box: the static
    square at the image centre, or the whole image for the dynamic mode. Users of the boxes
    (the context loss, the context discriminator) leave such samples out.

    Args:
        target: label maps.
        mode: ``"static"`` or ``"dynamic"``.
        size: side of the static square (required for ``"static"``; ignored for ``"dynamic"``).
        margin: dynamic mode, pixels added on each side of the tight box (ignored for static).
        min_size: dynamic mode, minimum box side in pixels (ignored for static).

    Returns:
        ``(boxes, has_roi)``.

    Raises:
        ValueError: unknown mode, a missing or bad size / margin / min_size, a static size larger
            than the image, or a target that is not a (B, H, W) integer tensor.

    Shape:
        - target: ``(B, H, W)`` integer.
        - boxes: ``(B, 4)`` int64 ``[y0, x0, y1, x1)`` on the target's device.
        - has_roi: ``(B,)`` bool.
    """
    if mode not in ROI_MODES:
        raise ValueError(f"ROI mode must be one of {ROI_MODES}, got {mode!r}")
    if target.dim() != 3:
        raise ValueError(f"target must be (B, H, W), got shape {tuple(target.shape)}")
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise ValueError(f"target must be an integer label map, got dtype {target.dtype}")
    if not isinstance(margin, int) or margin < 0:
        raise ValueError(f"margin must be an int >= 0, got {margin!r}")
    if not isinstance(min_size, int) or min_size < 1:
        raise ValueError(f"min_size must be an int >= 1, got {min_size!r}")
    _, height, width = target.shape
    device = target.device
    fg = target > 0  # (B, H, W)
    has_roi = fg.flatten(1).any(dim=1)  # (B,)
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    if mode == "static":
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"static ROI needs an int size >= 1, got {size!r}")
        if size > height or size > width:
            raise ValueError(f"static ROI size {size} does not fit in a {height}x{width} image")
        return _static_boxes(fg.long(), size, rows, cols), has_roi
    y0, y1 = _dynamic_interval(fg.any(dim=2), rows, margin, min_size)
    x0, x1 = _dynamic_interval(fg.any(dim=1), cols, margin, min_size)
    return torch.stack([y0, x0, y1, x1], dim=1), has_roi  # (B, 4)


def box_mask(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Boolean masks of half-open boxes.

    Args:
        boxes: ``[y0, x0, y1, x1)`` per sample.
        height: image height H.
        width: image width W.

    Returns:
        ``roi_mask``, True inside each sample's box.

    Shape:
        - boxes: ``(B, 4)`` integer.
        - Output: ``(B, H, W)`` bool on the boxes' device.
    """
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (B, 4), got shape {tuple(boxes.shape)}")
    rows = torch.arange(height, device=boxes.device)
    cols = torch.arange(width, device=boxes.device)
    in_rows = (rows >= boxes[:, 0:1]) & (rows < boxes[:, 2:3])  # (B, H)
    in_cols = (cols >= boxes[:, 1:2]) & (cols < boxes[:, 3:4])  # (B, W)
    return in_rows[:, :, None] & in_cols[:, None, :]  # (B, H, W)
