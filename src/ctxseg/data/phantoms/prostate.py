"""Prostate T2 MR phantom, written in PROMISE12's raw layout (``CaseNN.mhd`` + ``.raw``).

One case is an axial T2-weighted pelvis: thick slices (3.6 or 4 mm) of 0.75 mm pixels, like
PROMISE12's 0.6 x 0.6 x 3.6 mm scans, and the whole-gland mask. The gland is an egg-shaped
perturbed ellipsoid (wider at the base, tilted, rotated, of random size and position) with a
bright peripheral zone, a darker central gland and a dark capsule. Around it, the structures
that make the real task hard, at similar intensities: the rectum (muscular wall, gas or stool,
sometimes an endorectal coil with its bright near-field), the bladder and seminal vesicles above
the base, the levator ani and obturator internus muscles, the pubic bones, the neurovascular
bundles and the femoral heads, in bright pelvic fat. Slices above the base and below the apex
hold no prostate, and the gland's cross-section shrinks towards both ends: the class imbalance
of the real data (see docs/data.md for the measured figures).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import mr
from .shapes import Grid, Perturbation, draw, ellipsoid, paint, rotation

IN_PLANE = 256  # pixels; 0.75 mm -> a 192 mm field of view, as PROMISE12's 320 x 0.6 mm
PIXEL_MM = 0.75
SLAB_MM = 72.0  # covered extent along z; the gland spans about 35-65 mm of it


def _jitter(rng: np.random.Generator, value: float, spread: float = 0.12) -> float:
    return float(value * rng.uniform(1 - spread, 1 + spread))


def make_prostate_case(rng: np.random.Generator) -> mr.PhantomVolume:
    """Draw one prostate case.

    Returns:
        The volume: ``image`` uint16 and ``label`` uint8 {0, 1}, both ``(Z, Y, X)``, and its
        spacing ``(z, y, x)`` in mm. Axes: x patient left-right, y anterior (row 0) to
        posterior, z inferior (slice 0) to superior.
    """
    dz = float(rng.choice([3.6, 4.0]))
    grid = Grid((int(round(SLAB_MM / dz)), IN_PLANE, IN_PLANE), (dz, PIXEL_MM, PIXEL_MM))
    u = rng.uniform

    # The gland: size, position, orientation, outline.
    s = float(np.clip(np.exp(rng.normal(0.0, 0.17)), 0.7, 1.5))
    p_r = (27 * s * u(0.88, 1.12), 20 * s * u(0.88, 1.12), 24 * s * u(0.85, 1.15))
    p_c = (rng.normal(0, 4), rng.normal(0, 5), u(-7, 7))
    p_rot = rotation(rng.normal(0, 0.12), rng.normal(0.25, 0.1))
    gland = ellipsoid(
        grid, p_c, p_r, rot=p_rot, perturb=Perturbation.random(rng, u(0.05, 0.1)),
        taper=u(0.15, 0.35), edge=1.2,
    )  # fmt: skip
    bph = u(0.9, 1.35)  # central-gland enlargement
    cg_r = tuple(min(0.62 * bph * r, 0.85 * r) for r in p_r)
    cg_c = (p_c[0], p_c[1] - 0.22 * p_r[1], p_c[2] + 0.2 * p_r[2])
    central = ellipsoid(
        grid, cg_c, cg_r, rot=p_rot, perturb=Perturbation.random(rng, 0.08), edge=1.5
    ) * np.minimum(gland * 1.5, 1.0)
    px, py, pz = p_c

    # Tissue intensities (T2w, relative to a peak near 1), varied per case.
    fat, muscle = _jitter(rng, 0.48), _jitter(rng, 0.24, 0.2)
    image = np.zeros(grid.shape, np.float32)
    draw(image, fat, grid, (0.0, u(5, 25), 0.0), (u(165, 200), u(112, 130), 400.0), edge=2.0)

    for side in (-1, 1):
        # Large muscle masses: gluteus (posterolateral), obturator externus / pectineus
        # (anterolateral), obturator internus (lateral), levator ani (posterolateral sling).
        for centre, radii, ang in (
            ((side * u(70, 85), u(50, 70), 0.0), (u(45, 60), u(40, 50), 200), 0.3),
            ((side * u(40, 55), py - u(45, 60), pz), (u(22, 30), u(14, 20), 70), -0.5),
            ((side * u(50, 58), py + u(-5, 10), pz), (u(11, 15), u(30, 38), 60), 0.2),
        ):
            draw(image, _jitter(rng, muscle, 0.1), grid, centre, radii, rot=rotation(side * ang),
                 perturb=Perturbation.random(rng, 0.07, max_order=2), edge=1.5)  # fmt: skip
        la_c = (px + side * u(20, 28), py + 0.6 * p_r[1], pz - u(5, 15))
        draw(image, _jitter(rng, muscle, 0.08), grid, la_c, (u(3, 5), u(16, 22), 30),
             rot=rotation(side * u(-0.7, -0.4)))  # fmt: skip
        # Pubic bone (anterior) and femoral head (far lateral): dark cortex, fatty marrow.
        for centre, radii, ang in (
            ((px + side * u(22, 30), py - p_r[1] - u(14, 22), pz + u(-5, 10)), (22, 8, 28), 0.45),
            ((side * u(84, 94), py + u(-10, 5), pz + u(5, 25)), (24, 24, 24), 0.0),
        ):
            rot_b = rotation(side * ang)
            draw(image, _jitter(rng, 0.06, 0.3), grid, centre, radii, rot=rot_b)
            inner = tuple(r - 2.5 for r in radii)
            draw(image, _jitter(rng, 0.4, 0.2), grid, centre, inner, rot=rot_b)
        # Neurovascular bundle and seminal vesicle: small bright structures next to the gland.
        nvb = (px + side * 0.7 * p_r[0], py + 0.75 * p_r[1], pz)
        draw(image, _jitter(rng, 0.7), grid, nvb, (3.5, 3.5, 28), rot=p_rot)
        sv_c = (px + side * u(12, 20), py + 0.55 * p_r[1], pz + 0.8 * p_r[2] + u(0, 6))
        draw(image, _jitter(rng, 0.72, 0.15), grid, sv_c, (u(11, 16), u(4, 6), u(6, 9)),
             rot=rotation(side * u(0.3, 0.6)), perturb=Perturbation.random(rng, 0.1))  # fmt: skip

    # Clutter in the pelvic fat: vessels and fascia seen end-on, bright or dark.
    for _ in range(24):
        c = (u(-80, 80), u(-70, 80), u(-30, 30))
        draw(image, u(0.08, 0.8), grid, c, (u(1.5, 3.5), u(1.5, 3.5), u(8, 40)),
             rot=rotation(u(0, np.pi), u(-0.4, 0.4)))  # fmt: skip

    # Bladder: above the base, thin muscular wall, bright urine; its filling varies.
    b_r = (u(28, 50), u(20, 36), u(20, 36))
    b_c = (px + rng.normal(0, 5), py - 0.3 * p_r[1] - u(0, 8), pz + 0.8 * p_r[2] + 0.7 * b_r[2])
    b_pert = Perturbation.random(rng, 0.08)
    draw(image, muscle, grid, b_c, b_r, perturb=b_pert)
    inner = tuple(r - u(2.5, 4) for r in b_r)
    draw(image, _jitter(rng, 0.95, 0.05), grid, b_c, inner, perturb=b_pert)

    # Rectum: behind the gland along z; gas, stool, or an endorectal coil balloon.
    coil = rng.random() < 0.3
    rr = u(14, 18) if coil else u(10, 16)
    r_c = (px + rng.normal(0, 3), py + p_r[1] + u(3, 7) + 0.8 * rr, pz)
    r_rot = rotation(rng.normal(0, 0.1), rng.normal(0.2, 0.1))
    r_pert = Perturbation.random(rng, 0.06)
    draw(image, muscle, grid, r_c, (1.3 * rr, 0.8 * rr, 90), rot=r_rot, perturb=r_pert)
    lumen = 0.04 if coil or rng.random() < 0.4 else u(0.2, 0.6)
    wall = u(2.5, 4.0)
    lumen_r = (1.3 * rr - wall, 0.8 * rr - wall, 90)
    draw(image, lumen, grid, r_c, lumen_r, rot=r_rot, perturb=r_pert)

    # The gland on top: bright peripheral zone, darker central gland, dark capsule rim.
    paint(image, gland, _jitter(rng, 0.56, 0.1))
    paint(image, central, _jitter(rng, 0.3, 0.1))
    capsule = 4.0 * gland * (1.0 - gland)  # peaks on the gland surface
    image *= 1.0 - np.float32(u(0.25, 0.45)) * capsule

    # Texture: smooth tissue variation, fine mottling (stronger in the gland), coil profile.
    image *= 1.0 + 0.035 * mr.smooth_field(grid, rng, (10.0, 60.0), components=8)
    image += (0.045 + 0.06 * gland) * mr.mottle(grid, rng, sigma_mm=1.5) * image
    bias = mr.bias_field(grid, rng, u(0.15, 0.35))
    if coil:
        x = grid.axis(2)[None, None, :] - r_c[0]
        y = grid.axis(1)[None, :, None] - r_c[1]
        sigma = u(20, 30)
        bias = bias * (1.0 + np.float32(u(1.5, 3.0)) * np.exp(-(x * x + y * y) / (2 * sigma**2)))
    image = mr.rician(np.maximum(image, 0) * bias, u(0.012, 0.03), rng)
    return mr.PhantomVolume(
        image=mr.to_uint(image, u(700, 1300)),
        label=(gland >= 0.5).astype(np.uint8),
        spacing=grid.spacing,
    )


def write_prostate_phantoms(raw_dir: str | Path, cases: int = 20, seed: int = 0) -> list[Path]:
    """Write ``cases`` phantom cases in PROMISE12's layout into ``raw_dir``.

    Each case gets ``CaseNN.mhd`` + ``CaseNN.raw`` (uint16 image) and
    ``CaseNN_segmentation.mhd`` + ``.raw`` (uint8 mask) with the anisotropic spacing in the
    header, origin at the volume centre, identity direction. Case ``i`` depends only on
    ``(seed, i)``, so adding cases does not change the others.

    Returns:
        The image ``.mhd`` paths, in case order.
    """
    if cases < 1:
        raise ValueError(f"cases must be >= 1, got {cases}")
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(cases):
        rng = np.random.default_rng([seed, i])
        vol = make_prostate_case(rng)
        path = raw_dir / f"Case{i:02d}.mhd"
        mr.write_volume(vol.image, vol.spacing, path)
        mr.write_volume(vol.label, vol.spacing, raw_dir / f"Case{i:02d}_segmentation.mhd")
        paths.append(path)
    return paths
