"""Surface voxels with no voxel of the other surface in their look-up box, 8 at a time.

For the plain Hausdorff distance (the maximum) only the farthest voxels count. A surface voxel
with no voxel of the other surface at any offset of the look-up box of
:mod:`ctxseg.metrics.hausdorff` (every offset shorter than the box's bound) is at least that
bound away, and every voxel with one is nearer. So where a pair has such *far* voxels, in
either direction, its HD is the largest distance among them alone, and no other voxel of the
pair needs a distance at all: on a fair prediction a few dozen voxels instead of thousands.

Finding them is a dilation of the other surface by the box's offsets, read at the first
surface's voxels, on surfaces packed 8 voxels a byte (``np.packbits``, rows along the last
axis). The box is a ball: the offsets that share their leading coordinates (a *row offset*)
run along the last axis over ``-span..span``. So the other surface is dilated along its rows
once per span (bit shifts carried across bytes), and each row offset then ORs the dilation of
its span, shifted by whole rows, into the result: some 25 row offsets with 3 x 0.625 x
0.625 mm voxels, where the look-ups read up to 183 offsets a voxel. Both directions go
through each step together, as whole-array operations on the packed surfaces (a few tens of
kilobytes).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["far_voxels", "row_spans"]


def row_spans(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The look-up offsets grouped by row: each row offset and its span along the row.

    Args:
        offsets: the look-up offsets, every offset of a ball (for each row offset, all the
            offsets ``-span..span`` along the last axis).

    Returns:
        ``(rows, spans)``: the distinct leading coordinates and, for each, the largest
        offset along the last axis.

    Raises:
        ValueError: if the offsets of some row are not a full run ``-span..span``.

    Shape:
        offsets: (K, D) int; returns (R, D - 1) and (R,) int64.
    """
    rows, inverse = np.unique(offsets[:, :-1], axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    spans = np.zeros(rows.shape[0], np.int64)
    np.maximum.at(spans, inverse, np.abs(offsets[:, -1]))
    if not np.array_equal(np.bincount(inverse, minlength=rows.shape[0]), 2 * spans + 1):
        raise ValueError("the look-up offsets of a row must run over -span..span")
    return rows.astype(np.int64), spans


def far_voxels(
    bits: tuple[np.ndarray, np.ndarray], rows: np.ndarray, spans: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The voxels of each surface with no voxel of the other at any look-up offset.

    Args:
        bits: the first and the second surface packed along rows (``np.packbits(...,
            axis=-1)``).
        rows, spans: the look-up offsets, from :func:`row_spans`.

    The batch must be padded with zeros as :func:`ctxseg.metrics._surface.surfaces` pads it:
    at least the offsets' reach along every axis but the first, so that no offset leaves its
    own mask (along the rows: a span's shift carries only zero bits across row ends).

    Returns:
        For each surface, the sorted flat indices (in the unpacked batch) of its voxels that
        are farther from the other surface than every offset.

    Shape:
        bits: (N, *S[:-1], S[-1] / 8) uint8 each; rows: (R, len(S) - 1); spans: (R,).
    """
    shape = bits[0].shape
    size = math.prod(shape)
    strides = np.array([math.prod(shape[axis + 1 :]) for axis in range(1, len(shape) - 1)])
    steps = (rows @ strides.astype(np.int64)).tolist()  # byte steps of the row offsets
    # both surfaces side by side: each is read, shifted by the offsets, at the other's place
    both = np.concatenate([bits[0].reshape(-1), bits[1].reshape(-1)])  # (2 * size,)
    dilated = _row_dilations(both, int(spans.max()))  # (M + 1, 2 * size)
    near = np.zeros_like(both)  # the other surface dilated by the look-up offsets
    for step, span in zip(steps, spans.tolist(), strict=True):
        # no step leaves its own surface's margin, so the two halves shift independently
        lo, hi = max(0, -step), 2 * size - max(0, step)
        near[lo:hi] |= dilated[span, lo + step : hi + step]
    far = both & ~np.concatenate([near[size:], near[:size]])  # (2 * size,) as bits
    held = np.flatnonzero(far)  # the few bytes holding far voxels
    # bit b of the j-th byte is voxel 8 * j + b (np.packbits: the first voxel is the high bit)
    found = np.flatnonzero(np.unpackbits(far[held]).view(bool))
    flat = held[found >> 3] * 8 + (found & 7)
    split = int(np.searchsorted(flat, 8 * size))
    return flat[:split], flat[split:] - 8 * size


def _row_dilations(flat: np.ndarray, most: int) -> np.ndarray:
    """Packed bits dilated along their rows by ``-m..m``, for ``m = 0..most``.

    Each dilation is the previous one with its bits shifted by one both ways, carried across
    bytes; bits carried across a row's end land in the zero padding of the next row.

    Shape:
        flat: (B,) uint8, packed rows one after another; returns (most + 1, B) uint8.
    """
    out = np.empty((most + 1, flat.size), np.uint8)
    out[0] = flat
    for m in range(1, most + 1):
        before, now = out[m - 1], out[m]
        np.bitwise_or(before, before >> 1, out=now)  # a voxel's bit moves to the next voxel
        now[1:] |= before[:-1] * np.uint8(128)  # (uint8 multiplies vectorise, << does not)
        now |= before * np.uint8(2)  # ... and to the voxel before
        now[:-1] |= before[1:] >> 7
    return out
