"""Which surface voxels have a voxel of the other surface within a distance, 8 at a time.

The look-up offsets of :mod:`ctxseg.metrics.hausdorff` have few distinct distances (23 in
the box of 509 offsets with 1 mm voxels, 26 in the box of 183 with 3 x 0.625 x 0.625 mm).
The voxels of a surface with a voxel of the other within distance ``d`` are those under the
other surface dilated by every offset up to ``d`` (a ball); counting them level by level
gives the sorted distances of a pair without measuring any voxel (:class:`Widening`), and
the voxels outside the whole box (*far*) are the only ones that can hold a plain HD beyond
it (:meth:`Dilations.within`).

The dilations run on surfaces packed 8 voxels a byte (``np.packbits``, rows along the last
axis). A ball's offsets that share their leading coordinates (a *row offset*) run along the
last axis over ``-span..span``. So both surfaces are dilated along their rows once per span
(bit shifts carried across bytes), and each row offset of a ball ORs the dilation of its
span, shifted by whole rows, into the ball's result: 77 row offsets for the whole 1 mm box
above (293 for all its levels, one after another, each widening only the rows that grow).
All of it runs as whole-array operations on the packed surfaces of both directions side by
side (a few tens of kilobytes for a volume).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Dilations", "Levels", "Widening", "level_plan", "popcount", "row_spans"]

_BITS_SET = np.array([bin(byte).count("1") for byte in range(256)], np.uint8)


def row_spans(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A ball's offsets grouped by row: each row offset and its span along the row.

    Args:
        offsets: the offsets of a ball (for each row offset, all of ``-span..span`` along
            the last axis), e.g. a prefix of the look-up offsets cut at a change of distance.

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
        raise ValueError("the offsets of a ball's row must run over -span..span")
    return rows.astype(np.int64), spans


class Dilations:
    """Both surfaces of a batch, packed side by side and dilated along their rows.

    Args:
        both: the first and the second surface packed along rows (``np.packbits(...,
            axis=-1)``), one after the other, flat.
        shape: the shape of one of them packed, (N, *S[:-1], S[-1] / 8).
        most: the largest span along the rows any ball will need.

    The batch must be padded with zeros as :func:`ctxseg.metrics._surface.surfaces` pads it:
    at least the balls' reach along every axis but the first, so that no offset leaves its
    own mask (along the rows: a span's shift carries only zero bits across row ends).

    Shape:
        both: (2 * P,) uint8, P = prod(shape).
    """

    def __init__(self, both: np.ndarray, shape: tuple[int, ...], most: int) -> None:
        self.both = both
        self.size = math.prod(shape)
        strides = [math.prod(shape[axis + 1 :]) for axis in range(1, len(shape) - 1)]
        self._strides = np.array(strides, np.int64)
        self._dilated = _row_dilations(both, most)  # (most + 1, 2 * P)

    def grow(self, dilation: np.ndarray, rows: np.ndarray, spans: np.ndarray) -> None:
        """OR both surfaces, shifted by the row offsets and dilated by their spans, in place.

        Shape:
            dilation: (2 * P,) uint8; rows: (R, D - 1); spans: (R,).
        """
        steps = (rows @ self._strides).tolist()  # byte steps of the row offsets
        for step, span in zip(steps, spans.tolist(), strict=True):
            # no step leaves its own surface's margin: the two halves shift independently
            lo, hi = max(0, -step), 2 * self.size - max(0, step)
            dilation[lo:hi] |= self._dilated[span, lo + step : hi + step]

    def meet(self, dilation: np.ndarray) -> np.ndarray:
        """Each surface's voxels under the other's dilation: those with it within reach.

        Shape:
            dilation: (2 * P,) uint8 from :meth:`grow`; returns (2 * P,) uint8, the first
            surface's bytes then the second's.
        """
        size, inside = self.size, np.empty_like(self.both)
        np.bitwise_and(self.both[:size], dilation[size:], out=inside[:size])  # the first's
        np.bitwise_and(self.both[size:], dilation[:size], out=inside[size:])  # the second's
        return inside

    def within(self, rows: np.ndarray, spans: np.ndarray) -> np.ndarray:
        """Each surface's voxels with a voxel of the other in a ball (:func:`row_spans`).

        Shape:
            returns (2 * P,) uint8, as :meth:`meet`.
        """
        dilation = np.zeros_like(self.both)
        self.grow(dilation, rows, spans)
        return self.meet(dilation)


@dataclass(frozen=True)
class Levels:
    """The distinct distances of a look-up box, each with the row offsets it widens.

    Attributes:
        distances: the distinct offset distances, ascending (L,).
        ends: how many look-up offsets (sorted by distance) lie within each (L,).
        rows: for each distance, the row offsets whose span grows there (R_l, D - 1).
        spans: their new spans (R_l,).
    """

    distances: np.ndarray
    ends: np.ndarray
    rows: tuple[np.ndarray, ...]
    spans: tuple[np.ndarray, ...]


def level_plan(offsets: np.ndarray, distances: np.ndarray) -> Levels:
    """The distance levels of a look-up box (a ball: every prefix cut at a level is one).

    Shape:
        offsets: (K, D) int sorted by distance; distances: (K,) ascending.
    """
    values = np.unique(distances)
    ends = np.searchsorted(distances, values, side="right")
    rows, spans, known = [], [], {}
    for end in ends.tolist():
        ball_rows, ball_spans = row_spans(offsets[:end])
        grown = [
            i
            for i, (row, span) in enumerate(
                zip(map(tuple, ball_rows.tolist()), ball_spans, strict=True)
            )
            if known.get(row, -1) < span
        ]
        known.update({tuple(ball_rows[i].tolist()): int(ball_spans[i]) for i in grown})
        rows.append(ball_rows[grown])
        spans.append(ball_spans[grown])
    return Levels(values, ends.astype(np.int64), tuple(rows), tuple(spans))


class Widening:
    """Both surfaces dilated by the balls of growing distance levels, one level at a time.

    Both surfaces are kept dilated by every offset within the last level widened to; a
    voxel of a surface has a voxel of the other within that distance exactly where its bit
    is set in the other's dilation, which :meth:`widen` returns as bits of its voxels.

    Args:
        dilations: the pair's surfaces, dilated along rows as far as the levels' spans.
        levels: from :func:`level_plan`.
    """

    def __init__(self, dilations: Dilations, levels: Levels) -> None:
        self._dilations = dilations
        self._dilation = np.zeros_like(dilations.both)  # both surfaces dilated so far
        self._levels = levels

    def widen(self, level: int) -> np.ndarray:
        """Add one level's offsets; returns each surface's voxels with the other within it.

        Shape:
            returns (2 * P,) uint8, the first surface's bytes then the second's.
        """
        levels = self._levels
        self._dilations.grow(self._dilation, levels.rows[level], levels.spans[level])
        return self._dilations.meet(self._dilation)


def popcount(packed: np.ndarray) -> np.ndarray:
    """Set bits of each row of a packed array (``np.bitwise_count`` where NumPy has it).

    Shape:
        packed: (..., B) uint8; returns (...) int64.
    """
    if hasattr(np, "bitwise_count"):  # NumPy >= 2.0
        return np.bitwise_count(packed).sum(axis=-1, dtype=np.int64)
    return _BITS_SET[packed].sum(axis=-1, dtype=np.int64)


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
