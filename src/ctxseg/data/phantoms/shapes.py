"""Irregular anatomical shapes for the phantoms: perturbed ellipsoids on a millimetre grid.

A phantom organ is an ellipsoid whose radius is modulated by a random low-frequency function of
the direction (a few angular harmonics), optionally tapered along its long axis (an egg: the
prostate is wider at the base than at the apex) and rotated. Shapes are returned as *soft*
memberships in [0, 1] with an edge about ``edge`` mm wide: the image uses the soft value (partial
volume), the label is ``membership >= 0.5``.

Everything is vectorised NumPy and evaluated only inside the shape's bounding box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """A voxel grid in millimetres, centred on the volume centre.

    Args:
        shape: array shape ``(Z, Y, X)``.
        spacing: voxel size ``(z, y, x)`` in mm.

    Coordinates: ``x`` runs along columns, ``y`` along rows, ``z`` along slices, each 0 at the
    centre of the volume.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"Grid shape must be three positive sizes, got {self.shape}")
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise ValueError(f"Grid spacing must be three positive sizes, got {self.spacing}")

    def axis(self, i: int) -> np.ndarray:
        """Coordinates (mm) of axis ``i`` (0 = z, 1 = y, 2 = x), float32."""
        n = self.shape[i]
        return ((np.arange(n, dtype=np.float32) - (n - 1) / 2) * self.spacing[i]).astype(np.float32)

    def window(self, i: int, lo: float, hi: float) -> slice:
        """Index range of axis ``i`` whose coordinates lie in ``[lo, hi]`` (may be empty)."""
        c = self.axis(i)
        return slice(int(np.searchsorted(c, lo, "left")), int(np.searchsorted(c, hi, "right")))


@dataclass(frozen=True)
class Perturbation:
    """Low-frequency radial perturbation ``g(theta, w)`` of a unit sphere.

    ``g = (1 - w^2) sum_k a_k cos(m_k theta + phi_k + b_k w) + c1 w + c2 (w^2 - 1/3)`` where
    ``theta`` is the in-plane angle and ``w = cos(polar angle)`` in [-1, 1]. A point is inside
    the shape when its normalised radius is below ``1 + g``.
    """

    orders: np.ndarray  # (K,) int angular orders m_k
    amplitudes: np.ndarray  # (K,)
    phases: np.ndarray  # (K,)
    twists: np.ndarray  # (K,) b_k: how the in-plane pattern turns along the axis
    polar: tuple[float, float]  # (c1, c2)

    @classmethod
    def random(cls, rng: np.random.Generator, amplitude: float, max_order: int = 4):
        """Draw a perturbation with RMS radius change about ``amplitude`` (fraction of radius)."""
        if amplitude < 0 or max_order < 1:
            raise ValueError(
                f"need amplitude >= 0 and max_order >= 1, got {amplitude}, {max_order}"
            )
        orders = np.arange(1, max_order + 1)
        # Lower orders dominate: a smooth, organ-like outline rather than a star.
        amps = amplitude * rng.standard_normal(max_order) / orders**0.75
        return cls(
            orders=orders,
            amplitudes=amps,
            phases=rng.uniform(0, 2 * np.pi, max_order),
            twists=rng.uniform(-1.5, 1.5, max_order),
            polar=(
                float(amplitude * rng.standard_normal()),
                float(amplitude * rng.standard_normal()),
            ),
        )

    @classmethod
    def none(cls) -> Perturbation:
        z = np.zeros(0)
        return cls(orders=z.astype(int), amplitudes=z, phases=z, twists=z, polar=(0.0, 0.0))

    def bound(self) -> float:
        """Upper bound of ``|g|``."""
        return float(np.abs(self.amplitudes).sum() + abs(self.polar[0]) + abs(self.polar[1]))

    def __call__(self, theta: np.ndarray, w: np.ndarray) -> np.ndarray:
        # Python-float coefficients keep float32 inputs in float32 (NumPy 2 promotion rules).
        c1, c2 = float(self.polar[0]), float(self.polar[1])
        ripple = np.zeros_like(theta)
        for m, a, p, b in zip(self.orders, self.amplitudes, self.phases, self.twists, strict=True):
            ripple += float(a) * np.cos(float(m) * theta + (float(p) + float(b) * w))
        # The in-plane ripple fades towards the poles, where theta is undefined and a small
        # radial change would reshape a whole cross-section (a trefoil apex).
        g = ripple * (1.0 - w * w) + c1 * w + c2 * (w * w - 1.0 / 3.0)
        return g


def rotation(angle: float = 0.0, tilt: float = 0.0) -> np.ndarray:
    """Rotation matrix (x, y, z order): ``angle`` rad about z (in-plane), then ``tilt`` about x."""
    ca, sa, ct, st = np.cos(angle), np.sin(angle), np.cos(tilt), np.sin(tilt)
    rz = np.array([[ca, -sa, 0.0], [sa, ca, 0.0], [0.0, 0.0, 1.0]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, ct, -st], [0.0, st, ct]])
    return rz @ rx


def ellipsoid_region(
    grid: Grid,
    center: tuple[float, float, float],
    radii: tuple[float, float, float],
    *,
    rot: np.ndarray | None = None,
    perturb: Perturbation | None = None,
    taper: float = 0.0,
    edge: float = 1.0,
    z_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Soft membership of a perturbed, tapered, rotated ellipsoid.

    Args:
        grid: the voxel grid.
        center: centre ``(x, y, z)`` in mm (grid coordinates).
        radii: semi-axes ``(rx, ry, rz)`` in mm, in the shape's own frame.
        rot: 3 x 3 rotation (x, y, z order) from the shape frame to the grid frame.
        perturb: radial perturbation; None for a plain ellipsoid.
        taper: in-plane radii are scaled by ``1 + taper * w`` along the shape's z axis
            (``w`` = z / rz in the shape frame): > 0 makes the +z end wider.
        edge: width (mm) of the soft edge; the membership is 0.5 on the surface.
        z_range: keep only the part whose shape-frame z lies in ``[lo, hi]`` mm (a cut).

    Returns:
        ``(window, membership)``: the index window (three slices) of the bounding box and the
        float32 membership in [0, 1] inside it; ``None`` when the shape misses the grid.
    """
    radii_a = np.asarray(radii, dtype=np.float64)
    if radii_a.shape != (3,) or np.any(radii_a <= 0):
        raise ValueError(f"radii must be three positive numbers, got {radii}")
    if edge <= 0:
        raise ValueError(f"edge must be > 0, got {edge}")
    if not -0.9 < taper < 0.9:
        raise ValueError(f"taper must be in (-0.9, 0.9), got {taper}")
    rot = np.eye(3) if rot is None else np.asarray(rot, dtype=np.float64)
    perturb = perturb or Perturbation.none()

    # Half-extent of the rotated ellipsoid along each grid axis (x, y, z), then a margin.
    grow = (1 + perturb.bound()) * (1 + abs(taper))
    reach = np.sqrt(((rot * radii_a[None, :]) ** 2).sum(axis=1)) * grow + 2 * edge
    cx, cy, cz = center
    win = (
        grid.window(0, cz - reach[2], cz + reach[2]),
        grid.window(1, cy - reach[1], cy + reach[1]),
        grid.window(2, cx - reach[0], cx + reach[0]),
    )
    if any(s.stop <= s.start for s in win):
        return None
    dz = (grid.axis(0)[win[0]] - np.float32(cz))[:, None, None]  # (z, 1, 1)
    dy = (grid.axis(1)[win[1]] - np.float32(cy))[None, :, None]  # (1, y, 1)
    dx = (grid.axis(2)[win[2]] - np.float32(cx))[None, None, :]  # (1, 1, x)
    # Shape-frame coordinates u = rot^T d, each (z, y, x) by broadcasting.
    r = [[float(v) for v in row] for row in rot]
    ux = r[0][0] * dx + r[1][0] * dy + r[2][0] * dz
    uy = r[0][1] * dx + r[1][1] * dy + r[2][1] * dz
    uz = r[0][2] * dx + r[1][2] * dy + r[2][2] * dz
    rx, ry, rz = (float(v) for v in radii_a)
    qz = uz * (1.0 / rz)
    if taper:
        scale = 1.0 / (1.0 + taper * np.clip(qz, -1.0, 1.0))
        qx, qy = ux * scale * (1.0 / rx), uy * scale * (1.0 / ry)
    else:
        qx, qy = ux * (1.0 / rx), uy * (1.0 / ry)
    rho = np.sqrt(qx * qx + qy * qy + qz * qz)
    inside = 1.0
    if perturb.orders.size or any(perturb.polar):
        inside = 1.0 + perturb(np.arctan2(qy, qx), qz / np.maximum(rho, 1e-6))
    # (inside - rho) * mean radius approximates the signed distance to the surface in mm.
    mean_r = float(np.exp(np.log(radii_a).mean()))
    m = np.clip(0.5 + (inside - rho) * (mean_r / edge), 0.0, 1.0)
    if z_range is not None:
        lo, hi = z_range
        m = m * np.clip(0.5 + (uz - lo) / edge, 0, 1) * np.clip(0.5 + (hi - uz) / edge, 0, 1)
    return win, m


def ellipsoid(grid: Grid, center, radii, **kwargs) -> np.ndarray:
    """Soft membership of a perturbed ellipsoid over the whole grid (see :func:`ellipsoid_region`).

    Shape:
        Output: ``grid.shape`` ``(Z, Y, X)``, float32 in [0, 1].
    """
    out = np.zeros(grid.shape, dtype=np.float32)
    region = ellipsoid_region(grid, center, radii, **kwargs)
    if region is not None:
        out[region[0]] = region[1]
    return out


def paint(image: np.ndarray, membership: np.ndarray, value: float) -> None:
    """Composite a tissue of intensity ``value`` over ``image`` in place (partial volume)."""
    image += membership * (np.float32(value) - image)


def draw(image: np.ndarray, value: float, grid: Grid, center, radii, **kwargs) -> None:
    """Paint a perturbed ellipsoid of intensity ``value`` into ``image``, touching only its box.

    Arguments after ``value`` are those of :func:`ellipsoid_region`.
    """
    region = ellipsoid_region(grid, center, radii, **kwargs)
    if region is not None:
        win, m = region
        paint(image[win], m, value)
