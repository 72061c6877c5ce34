"""Regions of interest around the object in a target label map (SPEC §5), in 2-D and 3-D.

Both functions work on the whole batch at once on the target's device, with no Python loop
over samples and no host-device synchronisation, so they can sit inside a training step.

Box convention: ``boxes`` (B, 4) int64 ``[y0, x0, y1, x1)`` for 2-D targets and (B, 6)
``[z0, y0, x0, z1, y1, x1)`` for 3-D ones, half-open, in pixels / voxels: the starts of the
spatial axes in array order, then their stops.

Sizes: ``size``, ``margin`` and ``min_size`` are voxel counts, either one int for every axis
or one int per spatial axis; with ``spacing`` they are lengths in millimetres instead, turned
into voxels per axis by :func:`voxel_sides`, so that an anisotropic volume (say 3 x 0.7 x 0.7
mm) gets a physical cube (fewer voxels along the coarse axis), not a voxel cube.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["ROI_MODES", "box_mask", "check_sizes", "roi_boxes", "voxel_sides"]

ROI_MODES = ("static", "dynamic")


def voxel_sides(length_mm: float, spacing: Sequence[float], minimum: int = 1) -> tuple[int, ...]:
    """Voxel counts per axis that span ``length_mm`` millimetres.

    Each axis gets ``round(length_mm / spacing[a])`` voxels (halves rounded up), at least
    ``minimum``. A 50 mm side at spacing (3.0, 0.7, 0.7) gives (17, 71, 71).

    Args:
        length_mm: the physical length, >= 0.
        spacing: voxel size per axis in mm, in the array's axis order, all > 0.
        minimum: the fewest voxels an axis may get (1 for sides, 0 for margins).

    Raises:
        ValueError: a negative or non-finite length, or a spacing value that is not > 0.
    """
    spacing = tuple(float(s) for s in spacing)
    if not spacing or not all(s > 0 and math.isfinite(s) for s in spacing):
        raise ValueError(f"spacing must be positive finite values, got {spacing}")
    if isinstance(length_mm, bool) or not (length_mm >= 0 and math.isfinite(length_mm)):
        raise ValueError(f"a length in mm must be a finite number >= 0, got {length_mm!r}")
    return tuple(max(minimum, math.floor(length_mm / s + 0.5)) for s in spacing)


def _per_axis(
    name: str, value: object, ndim: int, spacing: Sequence[float] | None, minimum: int
) -> tuple[int, ...]:
    """``value`` as one voxel count per spatial axis, validated (see the module docstring)."""
    if spacing is not None:
        if len(spacing) != ndim:
            raise ValueError(
                f"spacing must have {ndim} values for a {ndim}-D target, got {spacing}"
            )
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a length in mm >= 0, got {value!r}")
            return voxel_sides(value, spacing, minimum)
        raise ValueError(f"with a spacing, {name} is one length in mm, got {value!r}")
    values = (value,) * ndim if isinstance(value, int) else value
    ok = (
        isinstance(values, (tuple, list))
        and len(values) == ndim
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in values)
    )
    if not ok:
        raise ValueError(
            f"{name} must be an int >= {minimum} or {ndim} such ints (one per axis), got {value!r}"
        )
    return tuple(values)


def check_sizes(
    roi_size: object = None,
    margin: object = 0,
    min_size: object = 1,
    spacing: Sequence[float] | None = None,
) -> None:
    """Validate ROI sizes before the target, and so its number of axes, is known.

    The rules of :func:`roi_boxes` (``roi_size`` None is skipped); a per-axis sequence is
    checked against its own length, or against ``spacing``'s. :func:`roi_boxes` checks the
    lengths against the target again.

    Raises:
        ValueError: naming the bad argument and value.
    """
    for name, value, minimum in (
        ("roi_size", roi_size, 1),
        ("margin", margin, 0),
        ("min_size", min_size, 1),
    ):
        if value is None and name == "roi_size":
            continue
        if spacing is not None:
            ndim = len(spacing)
        elif isinstance(value, (tuple, list)):
            if len(value) not in (2, 3):
                raise ValueError(f"{name} needs one value per axis (2 or 3), got {value!r}")
            ndim = len(value)
        else:
            ndim = 2  # one int stands for every axis: any count of axes checks it the same
        _per_axis(name, value, ndim, spacing, minimum)


def _shift_inside(start: torch.Tensor, length: int, extent: int) -> torch.Tensor:
    """Shift intervals ``[start, start + length)`` so they lie inside ``[0, extent)``.

    ``length <= extent`` is required; the interval keeps its length.
    """
    return start.clamp(min=0, max=extent - length)


def _axis_profiles(fg: torch.Tensor, count: bool) -> list[torch.Tensor]:
    """``fg`` reduced onto each spatial axis: per line, its foreground count or whether it has any.

    Two passes over the volume, whatever its dimension: one over the last axis (giving the
    profiles of all other axes from a smaller tensor) and one over the first spatial axis (then
    over the next ones of the smaller result) for the last axis' profile.

    Args:
        fg: foreground mask.
        count: True for counts (int64), False for any (bool).

    Shape:
        - fg: ``(B, *S)`` bool.
        - Output: one ``(B, S[a])`` tensor per spatial axis ``a``.
    """

    def reduce(x: torch.Tensor, dim: int) -> torch.Tensor:
        return x.sum(dim=dim) if count else x.any(dim=dim)

    ndim = fg.dim() - 1
    inner = reduce(fg, -1)  # (B, S[0], ..., S[n-2])
    profiles = []
    for axis in range(1, ndim):  # every spatial axis but the last, from ``inner``
        profile = inner
        for dim in range(profile.dim() - 1, 0, -1):
            if dim != axis:
                profile = reduce(profile, dim)
        profiles.append(profile)  # (B, S[axis - 1])
    last = fg
    while last.dim() > 2:
        last = reduce(last, 1)
    profiles.append(last)  # (B, S[-1])
    return profiles


def _static_interval(counts: torch.Tensor, side: int) -> torch.Tensor:
    """One axis of the static box: its start, centred on the truncated foreground centroid.

    Args:
        counts: (B, N) int64 foreground voxels per line along the axis.
        side: the box side on this axis, <= N.

    Returns:
        ``start`` (B,); samples without foreground centre on ``N // 2``.
    """
    extent = counts.shape[1]
    index = torch.arange(extent, device=counts.device)
    total = counts.sum(dim=1)  # (B,)
    coord_sum = (counts * index).sum(dim=1)  # (B,) sum of this axis' index over fg voxels
    # Integer floor division == truncation of the (non-negative) mean, as the authors' int().
    centre = torch.where(
        total > 0, coord_sum // total.clamp(min=1), torch.full_like(total, extent // 2)
    )
    return _shift_inside(centre - side // 2, side, extent)


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
    size: int | Sequence[int] | float | None = None,
    margin: int | Sequence[int] | float = 0,
    min_size: int | Sequence[int] | float = 1,
    spacing: Sequence[float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample ROI boxes from a batch of 2-D or 3-D label maps (SPEC §5).

    Foreground is every label > 0 (all classes merged). Every rule below applies to each
    spatial axis on its own (rows and columns; in 3-D also slices):

    - ``"static"``: a box of side ``size`` (a square in 2-D, a cube in 3-D) whose rows are
      ``[cy - size // 2, cy - size // 2 + size)`` (other axes likewise), where ``cy`` is the
      integer-truncated mean row of the foreground. A box that would leave the image is
      shifted inside it, keeping its size (the authors did not clamp).
    - ``"dynamic"``: the tight bounding box of the foreground, enlarged by ``margin`` on every
      side and clipped to the image, then grown symmetrically to at least ``min_size`` per side;
      a grown box that would leave the image is shifted inside it, so every box is at least
      ``min(min_size, extent)`` long on every axis.

    A sample without foreground has ``has_roi`` False and a harmless placeholder box: the static
    box at the image centre, or the whole image for the dynamic mode. Users of the boxes
    (the context loss, the context discriminator) leave such samples out.

    Args:
        target: label maps, 2-D or 3-D.
        mode: ``"static"`` or ``"dynamic"``.
        size: side of the static box (required for ``"static"``; ignored for ``"dynamic"``).
        margin: dynamic mode, voxels added on each side of the tight box (ignored for static).
        min_size: dynamic mode, minimum box side (ignored for static).
        spacing: voxel size in mm per spatial axis (array order). When given, ``size``,
            ``margin`` and ``min_size`` are lengths in mm, converted per axis with
            :func:`voxel_sides`; otherwise they are voxel counts: one int for every axis or a
            sequence of one int per axis.

    Returns:
        ``(boxes, has_roi)``.

    Raises:
        ValueError: unknown mode, a missing or bad size / margin / min_size / spacing, a static
            size larger than the image, or a target that is not a (B, H, W) or (B, D, H, W)
            integer tensor.

    Shape:
        - target: ``(B, H, W)`` or ``(B, D, H, W)`` integer.
        - boxes: ``(B, 4)`` int64 ``[y0, x0, y1, x1)``, or ``(B, 6)`` int64
          ``[z0, y0, x0, z1, y1, x1)``, on the target's device.
        - has_roi: ``(B,)`` bool.
    """
    if mode not in ROI_MODES:
        raise ValueError(f"ROI mode must be one of {ROI_MODES}, got {mode!r}")
    if target.dim() not in (3, 4):
        raise ValueError(
            f"target must be (B, H, W) or (B, D, H, W), got shape {tuple(target.shape)}"
        )
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise ValueError(f"target must be an integer label map, got dtype {target.dtype}")
    ndim = target.dim() - 1
    extents = tuple(target.shape[1:])
    margins = _per_axis("margin", margin, ndim, spacing, minimum=0)
    min_sizes = _per_axis("min_size", min_size, ndim, spacing, minimum=1)
    fg = target > 0  # (B, *S)
    if mode == "static":
        if size is None:
            raise ValueError("static ROI needs a size >= 1, got None")
        sides = _per_axis("static ROI size", size, ndim, spacing, minimum=1)
        if any(s > e for s, e in zip(sides, extents, strict=True)):
            shape = "x".join(map(str, extents))
            raise ValueError(f"static ROI size {size} does not fit in a {shape} image")
        counts = _axis_profiles(fg, count=True)  # ndim x (B, N_a)
        has_roi = counts[0].sum(dim=1) > 0  # (B,)
        starts = [_static_interval(counts[a], sides[a]) for a in range(ndim)]
        stops = [start + side for start, side in zip(starts, sides, strict=True)]
        return torch.stack(starts + stops, dim=1), has_roi  # (B, 2 * ndim)
    present_lines = _axis_profiles(fg, count=False)  # ndim x (B, N_a) bool
    has_roi = present_lines[0].any(dim=1)  # (B,)
    starts, stops = [], []
    for a in range(ndim):  # a loop over the 2 or 3 axes, never over samples
        index = torch.arange(extents[a], device=target.device)
        present = present_lines[a]  # (B, N_a)
        start, stop = _dynamic_interval(present, index, margins[a], min_sizes[a])
        starts.append(start)
        stops.append(stop)
    return torch.stack(starts + stops, dim=1), has_roi  # (B, 2 * ndim)


def box_mask(boxes: torch.Tensor, *shape: int) -> torch.Tensor:
    """Boolean masks of half-open boxes, 2-D or 3-D.

    Args:
        boxes: ``[y0, x0, y1, x1)`` or ``[z0, y0, x0, z1, y1, x1)`` per sample.
        *shape: the spatial size: ``height, width`` or ``depth, height, width``.

    Returns:
        ``roi_mask``, True inside each sample's box.

    Raises:
        ValueError: boxes not (B, 4) / (B, 6), or a shape with a different number of axes.

    Shape:
        - boxes: ``(B, 4)`` or ``(B, 6)`` integer.
        - Output: ``(B, H, W)`` or ``(B, D, H, W)`` bool on the boxes' device.
    """
    if boxes.dim() != 2 or boxes.shape[1] not in (4, 6):
        raise ValueError(f"boxes must be (B, 4) or (B, 6), got shape {tuple(boxes.shape)}")
    ndim = boxes.shape[1] // 2
    if len(shape) != ndim:
        raise ValueError(f"boxes {tuple(boxes.shape)} need {ndim} spatial sizes, got {shape}")
    mask = None
    for a, extent in enumerate(shape):
        index = torch.arange(extent, device=boxes.device)
        inside = (index >= boxes[:, a : a + 1]) & (index < boxes[:, ndim + a : ndim + a + 1])
        view = [inside.shape[0]] + [1] * ndim  # (B, 1, ..., N_a, ..., 1)
        view[a + 1] = extent
        inside = inside.view(view)
        mask = inside if mask is None else mask & inside  # broadcasts to (B, *shape)
    return mask
