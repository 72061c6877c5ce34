"""Surface voxels of binary masks, computed 8 voxels per byte (the first step of SPEC §8's HD).

The surface of a mask is the mask minus its binary erosion by the face-connected cross, with
voxels outside the array counted as background: ``mask ^ scipy.ndimage.binary_erosion(mask)``,
as in MONAI's ``get_mask_edges`` and MedPy. Packing the last axis into bits
(``np.packbits``) makes every erosion step an operation on an eighth of the bytes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

__all__ = ["Surfaces", "bit_indices", "mask_edges", "pack_rows", "surfaces"]


def pack_rows(mask: np.ndarray) -> np.ndarray:
    """``np.packbits(mask, axis=-1)``: 8 voxels a byte along the last axis, rows zero-padded.

    When the rows are whole bytes the flat array is packed at once (about twice as fast).

    Shape:
        mask: (*S) bool; returns (*S[:-1], ceil(S[-1] / 8)) uint8.
    """
    if mask.shape[-1] % 8 or not mask.flags.c_contiguous:
        return np.packbits(mask, axis=-1)
    return np.packbits(mask.reshape(-1)).reshape(*mask.shape[:-1], mask.shape[-1] // 8)


def mask_edges(mask: np.ndarray, batched: bool = False) -> np.ndarray:
    """Surface voxels of a mask: the mask minus its erosion by the face-connected cross.

    Same as ``mask ^ scipy.ndimage.binary_erosion(mask)`` (and MONAI's ``get_mask_edges``):
    voxels outside the array count as background, so a mask touching the border has its
    border voxels on the surface.

    Args:
        mask: boolean mask.
        batched: if True the first axis indexes independent masks and is not eroded along.

    Shape:
        mask: (*S) or (N, *S) when batched; returns the same shape.
    """
    mask = np.asarray(mask, dtype=bool)
    batch = mask if batched else mask[None]
    packed = _packed_edges(pack_rows(batch))
    edges = np.unpackbits(packed, axis=-1, count=batch.shape[-1]).view(bool)
    return edges if batched else edges[0]


@dataclass(frozen=True)
class Surfaces:
    """The surfaces of N mask pairs, cropped to their common box and zero-padded.

    Attributes:
        shape: shape (N, *S) of the padded batch the flat indices refer to (C order).
        pred_flat: sorted flat indices of the prediction's surface voxels.
        target_flat: sorted flat indices of the reference's surface voxels.
        pred_lookup: the prediction's surface as a flat boolean array of ``prod(shape)``
            (unpacked on first use).
        target_lookup: the same for the reference.
        bits: both surfaces packed along rows, the prediction's bytes then the reference's,
            (2 * N * prod(S[:-1]) * S[-1] / 8,) uint8.
        pred_bits: the prediction's surface packed along rows, (N, *S[:-1], S[-1] / 8) uint8
            (a view of ``bits``).
        target_bits: the same for the reference.
    """

    shape: tuple[int, ...]
    pred_flat: np.ndarray
    target_flat: np.ndarray
    bits: np.ndarray
    pred_bits: np.ndarray
    target_bits: np.ndarray

    @functools.cached_property
    def _lookup(self) -> np.ndarray:
        """Both surfaces unpacked, one after the other (only when look-ups need them)."""
        return np.unpackbits(self.bits).view(bool)

    @property
    def pred_lookup(self) -> np.ndarray:
        return self._lookup[: self._lookup.size // 2]

    @property
    def target_lookup(self) -> np.ndarray:
        return self._lookup[self._lookup.size // 2 :]


def surfaces(
    pred_bits: np.ndarray, target_bits: np.ndarray, keep: np.ndarray, margin: np.ndarray
) -> Surfaces:
    """Surfaces of the mask pairs ``keep``, inside the box of all foreground plus ``margin``.

    Cropping does not change the surfaces (outside the array is background either way); the
    zero margin lets a flat index step up to ``margin`` voxels along each axis without
    leaving its own mask, so neighbour look-ups need no bounds checks. The masks come packed
    to bits, so cropping, padding and eroding move an eighth of the bytes.

    Args:
        pred_bits: predicted masks, ``np.packbits(pred, axis=-1)``.
        target_bits: reference masks, packed the same way.
        keep: indices of the pairs to keep (both masks non-empty).
        margin: zero voxels added on each side of each spatial axis (at least 1 used; whole
            bytes along the last axis).

    Shape:
        pred_bits, target_bits: (N, *S[:-1], ceil(S[-1] / 8)) uint8; keep: (K,);
        margin: (len(S),). The padded batch has shape (K, *S') with S' >= box + 2 * margin and
        S'[-1] a multiple of 8.
    """
    union = pred_bits | target_bits
    inner = _nonzero_box(union[0] if union.shape[0] == 1 else np.bitwise_or.reduce(union, axis=0))
    pads = [max(int(m), 1) for m in margin[:-1]] + [-(-max(int(margin[-1]), 1) // 8)]
    size = tuple(sl.stop - sl.start + 2 * pad for sl, pad in zip(inner, pads, strict=True))
    place = tuple(slice(pad, size_ - pad) for pad, size_ in zip(pads, size, strict=True))
    pairs = slice(None) if keep.size == pred_bits.shape[0] else keep  # a slice copies less
    # both surfaces in one array, the predictions' first: one pass of each step for both
    padded = np.zeros((2 * keep.size, *size), np.uint8)
    padded[(slice(None, keep.size), *place)] = pred_bits[(pairs, *inner)]
    padded[(slice(keep.size, None), *place)] = target_bits[(pairs, *inner)]
    edges = _packed_edges(padded)  # (the first axis is not eroded along)
    flat = bit_indices(edges)
    half = 8 * edges[: keep.size].size  # voxels of one surface
    split = int(np.searchsorted(flat, half))
    return Surfaces(
        shape=(keep.size, *size[:-1], 8 * size[-1]),
        pred_flat=flat[:split],
        target_flat=flat[split:] - half,
        bits=edges.reshape(-1),
        pred_bits=edges[: keep.size],
        target_bits=edges[keep.size :],
    )


def _nonzero_box(array: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of the non-zero entries of an array that has some.

    Shape:
        array: (*S); returns len(S) slices.
    """
    nonzero = array != 0  # bool reductions are much faster than on uint8
    box = []
    for axis in range(array.ndim):
        # Reduce along long contiguous rows only (a short last axis is slow to reduce): the
        # first axis gives its extent, then is projected away.
        rows = nonzero.reshape(array.shape[axis], -1)
        hit = np.flatnonzero(rows.any(axis=1))
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
        nonzero = rows.any(axis=0).reshape(array.shape[axis + 1 :])
    return tuple(box)


def _packed_edges(packed: np.ndarray) -> np.ndarray:
    """Surface voxels of masks packed 8 per byte along the last axis (``np.packbits``).

    The bits past the end of a row are 0: background, as outside the array.

    Shape:
        packed: (N, *S[:-1], ceil(S[-1] / 8)) uint8; returns the same shape.
    """
    # Along the packed axis a neighbour is the next bit, carried across the bytes of a row.
    # The carries run over the flat array (fast, contiguous); the bits carried across the
    # end of a row are then cleared (background outside the array).
    # (NumPy's uint8 left shift is not vectorised; a wrapping multiply is, same result.)
    flat = packed.reshape(-1)
    before = flat >> 1
    before[1:] |= flat[:-1] * np.uint8(128)  # flat << 7
    after = flat * np.uint8(2)  # flat << 1
    after[:-1] |= flat[1:] >> 7
    rows = packed.shape[-1]
    before[::rows] &= 0x7F  # first bit of a row: its neighbour before is outside
    after[rows - 1 :: rows] &= 0xFE  # last bit of a row: its neighbour after is outside
    interior = (flat & before & after).reshape(packed.shape)
    for axis in range(1, packed.ndim - 1):
        head = [slice(None)] * packed.ndim
        tail = [slice(None)] * packed.ndim
        head[axis], tail[axis] = slice(1, None), slice(None, -1)
        interior[tuple(head)] &= packed[tuple(tail)]  # the neighbour before must be inside
        interior[tuple(tail)] &= packed[tuple(head)]  # the neighbour after must be inside
        head[axis], tail[axis] = 0, -1
        interior[tuple(head)] = 0  # outside the array is background
        interior[tuple(tail)] = 0
    return packed & ~interior


def bit_indices(packed: np.ndarray) -> np.ndarray:
    """Sorted flat indices of the set bits, in the unpacked array's C order.

    Valid when the unpacked last axis is a whole number of bytes (see :func:`surfaces`).

    Shape:
        packed: (N, *S[:-1], S[-1] / 8) uint8; returns (P,) int64.
    """
    flat = packed.ravel()
    nonzero = np.flatnonzero(flat != 0)  # the few bytes holding surface voxels
    # bit b of the j-th byte is 8 * j + b; (0/1 bytes viewed as bool: a much faster search)
    bits = np.flatnonzero(np.unpackbits(flat[nonzero]).view(bool))
    return nonzero[bits >> 3] * 8 + (bits & 7)
