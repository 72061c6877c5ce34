"""Which surface voxels have a voxel of the other surface within a distance, 8 at a time.

The look-up offsets of :mod:`ctxseg.metrics.hausdorff` have few distinct distances (23 in
the box of 509 offsets with 1 mm voxels, 26 in the box of 183 with 3 x 0.625 x 0.625 mm).
The voxels of a surface with a voxel of the other within distance ``d`` are those under the
other surface dilated by every offset up to ``d`` (a ball); counting them level by level
gives the sorted distances of a pair without measuring any voxel (:class:`Widening`), and
the voxels outside the whole box (*far*) are the only ones that can hold a plain HD beyond
it (:func:`within_balls`).

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

__all__ = ["Balls", "Levels", "Widening", "ball_plan", "level_plan", "popcount", "within_balls"]

_BITS_SET = np.array([bin(byte).count("1") for byte in range(256)], np.uint8)


@dataclass(frozen=True)
class Balls:
    """Nested balls of a look-up box, by rows.

    Attributes:
        ends: for each ball, how many look-up offsets (sorted by distance) it holds: ball
            ``k`` is ``offsets[:ends[k]]``; increasing, the last one is all of them.
        rows: for each ball, its row offsets (R_k, D - 1).
        spans: for each ball, the largest offset along the last axis of each row (R_k,).
    """

    ends: np.ndarray
    rows: tuple[np.ndarray, ...]
    spans: tuple[np.ndarray, ...]


def ball_plan(
    offsets: np.ndarray, distances: np.ndarray, fractions: tuple[float, ...] = (1.0,)
) -> Balls:
    """Cut a look-up box into nested balls holding about ``fractions`` of its offsets.

    Args:
        offsets: the look-up offsets sorted by distance, every offset within the largest
            distance (so that each prefix cut at a change of distance is a ball).
        distances: their distances, ascending.
        fractions: the balls' sizes as fractions of the offsets, ascending, the last 1.

    Raises:
        ValueError: if the offsets of a ball's row are not a full run ``-span..span``.

    Shape:
        offsets: (K, D) int; distances: (K,).
    """
    ends: list[int] = []
    for fraction in fractions:
        radius = distances[max(0, math.ceil(fraction * distances.size) - 1)]
        end = int(np.searchsorted(distances, radius, side="right"))  # ties all in
        if not ends or end > ends[-1]:
            ends.append(end)
    rows, spans = zip(*(row_spans(offsets[:end]) for end in ends), strict=True)
    return Balls(ends=np.array(ends, np.int64), rows=tuple(rows), spans=tuple(spans))


def row_spans(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A ball's offsets grouped by row: each row offset and its span along the row.

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


def within_balls(both: np.ndarray, shape: tuple[int, ...], balls: Balls) -> np.ndarray:
    """For each ball, the voxels of each surface with a voxel of the other in that ball.

    Args:
        both: the first and the second surface packed along rows (``np.packbits(...,
            axis=-1)``), one after the other, flat.
        shape: the shape of one of them packed, (N, *S[:-1], S[-1] / 8).
        balls: from :func:`ball_plan`.

    The batch must be padded with zeros as :func:`ctxseg.metrics._surface.surfaces` pads it:
    at least the box's reach along every axis but the first, so that no offset leaves its
    own mask (along the rows: a span's shift carries only zero bits across row ends).

    Returns:
        (K, 2 * P) uint8, P the bytes of one surface: for ball ``k``, the first surface's
        voxels with a voxel of the second in the ball, then the second's with one of the
        first, packed as ``bits``.

    Shape:
        both: (2 * P,) uint8, P = prod(shape).
    """
    size = math.prod(shape)
    strides = np.array([math.prod(shape[axis + 1 :]) for axis in range(1, len(shape) - 1)])
    most = max(int(spans.max()) for spans in balls.spans)
    dilated = _row_dilations(both, most)  # (M + 1, 2 * P)
    out = np.empty((balls.ends.size, 2 * size), np.uint8)
    near = np.empty(2 * size, np.uint8)
    for k, (rows, spans) in enumerate(zip(balls.rows, balls.spans, strict=True)):
        near[:] = 0  # both surfaces dilated by ball k
        steps = (rows @ strides.astype(np.int64)).tolist()  # byte steps of the row offsets
        for step, span in zip(steps, spans.tolist(), strict=True):
            # no step leaves its own surface's margin: the two halves shift independently
            lo, hi = max(0, -step), 2 * size - max(0, step)
            near[lo:hi] |= dilated[span, lo + step : hi + step]
        np.bitwise_and(both[:size], near[size:], out=out[k, :size])  # the first's voxels ...
        np.bitwise_and(both[size:], near[:size], out=out[k, size:])  # ... near the second's
    return out


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
        both: the first and the second surface packed along rows, one after the other, flat,
            padded as for :func:`within_balls`.
        shape: the shape of one of them packed, (N, *S[:-1], S[-1] / 8).
        levels: from :func:`level_plan`.
    """

    def __init__(self, both: np.ndarray, shape: tuple[int, ...], levels: Levels) -> None:
        self.size = math.prod(shape)
        strides = [math.prod(shape[axis + 1 :]) for axis in range(1, len(shape) - 1)]
        self._strides = np.array(strides, np.int64)
        self.both = both  # (2 * P,)
        most = max((int(s.max()) for s in levels.spans if s.size), default=0)
        self._dilated = _row_dilations(self.both, most)
        self._dilation = np.zeros_like(self.both)  # both surfaces dilated so far
        self._levels = levels

    def widen(self, level: int) -> np.ndarray:
        """Add one level's offsets; returns each surface's voxels with the other within it.

        Shape:
            returns (2 * P,) uint8, the first surface's bytes then the second's.
        """
        size, dilation = self.size, self._dilation
        steps = (self._levels.rows[level] @ self._strides).tolist()
        for step, span in zip(steps, self._levels.spans[level].tolist(), strict=True):
            lo, hi = max(0, -step), 2 * size - max(0, step)
            dilation[lo:hi] |= self._dilated[span, lo + step : hi + step]
        inside = np.empty_like(self.both)
        np.bitwise_and(self.both[:size], dilation[size:], out=inside[:size])  # the first's
        np.bitwise_and(self.both[size:], dilation[:size], out=inside[size:])  # ... the second's
        return inside


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
