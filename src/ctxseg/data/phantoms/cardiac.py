"""Cardiac cine MR phantom, written in ACDC's official raw layout.

One patient is a short-axis stack (thick slices 6.5-10 mm apart, about 1.5 mm pixels, as ACDC)
at end-diastole (ED) and end-systole (ES), with ACDC's labels 1 RV, 2 Myo, 3 LV. The left
ventricle is a half-ellipsoid cut at the base plane (so slices shrink to a tiny cavity at the
apex), the myocardium a wall around it that closes over the apex, the right ventricle a
crescent wrapped around the septum that stops short of the apex. ES has a smaller LV cavity
(ejection fraction by disease group), a thicker myocardium (wall volume conserved), a smaller RV
and a base that moves towards the apex. Around the heart, at bSSFP-like intensities: bright
atria and great vessels above the base (unlabelled blood as bright as the ventricles), the
descending aorta, epicardial fat, the chest wall, dark lungs, spine, liver and stomach below.
Papillary muscles sit inside the LV cavity (labelled LV, as in ACDC) with the myocardium's
intensity. Slices above the base and below the apex hold no label.

ACDC's five groups (NOR, MINF, DCM, HCM, RV) set the cavity size, wall thickness, ejection
fraction and RV size, and are written to ``Info.cfg`` like the real ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import mr
from .shapes import Grid, Perturbation, draw, ellipsoid_region, rotation

# Per group, ED ranges: LV cavity radius Rc (mm), wall thickness T (mm), cavity length L (mm),
# ES/ED cavity-radius ratio, RV crescent thickness w (mm).
GROUPS: dict[str, dict[str, tuple[float, float]]] = {
    "NOR": {"rc": (25, 31), "t": (8, 11), "l": (75, 90), "es": (0.58, 0.7), "w": (13, 21)},
    "MINF": {"rc": (28, 36), "t": (6, 9), "l": (80, 95), "es": (0.78, 0.88), "w": (14, 23)},
    "DCM": {"rc": (32, 40), "t": (5, 8), "l": (85, 100), "es": (0.84, 0.93), "w": (13, 22)},
    "HCM": {"rc": (20, 26), "t": (13, 18), "l": (65, 80), "es": (0.45, 0.6), "w": (13, 21)},
    "RV": {"rc": (23, 29), "t": (7, 10), "l": (75, 90), "es": (0.6, 0.72), "w": (25, 36)},
}
BLOOD, MYO, FAT, LUNG, LIVER, MUSCLE = 0.85, 0.27, 0.68, 0.04, 0.32, 0.25


def _ventricles(p: dict, phase: str) -> dict[str, float]:
    """Phase geometry from the patient's ED parameters (mm)."""
    rc, t, lc, w = p["rc"], p["t"], p["l"], p["w"]
    if phase == "ED":
        return {"rc": rc, "t": t, "l": lc, "w": w, "zb": p["zb"]}
    rc_es = rc * p["es"]
    # Myocardial cross-section conserved: (Rc' + T')^2 - Rc'^2 = (Rc + T)^2 - Rc^2.
    t_es = float(np.sqrt(rc_es**2 + (rc + t) ** 2 - rc**2) - rc_es)
    l_es = lc * p["shorten"]
    # The base descends towards the apex (the apex moves less).
    zb = p["zb"] + 0.3 * (lc - l_es)
    return {"rc": rc_es, "t": t_es, "l": l_es, "w": w * p["rv_es"], "zb": zb}


def _draw_patient(rng: np.random.Generator, group: str) -> dict:
    """All anatomy of one patient (shared by its ED and ES frames)."""
    u = rng.uniform
    g = GROUPS[group]
    p = {k: u(*g[k]) for k in ("rc", "t", "l", "es", "w")}
    p.update(group=group, shorten=u(0.84, 0.92), rv_es=u(0.6, 0.8) if group != "RV" else 0.88)
    dz = float(rng.choice([10.0, 10.0, 10.0, 8.0, 6.5]))
    dxy = u(1.25, 1.6)
    # Stack: 0-1 slice above the base, down to 0-1 slice beyond the apex.
    above, below = u(-0.7, 0.25) * dz, u(-0.8, 0.2) * dz
    extent = above + p["l"] + 0.4 * p["t"] + below
    nz = int(np.clip(np.ceil(extent / dz), 5, 20))
    shape = (nz, int(rng.choice([192, 208, 224, 256])), int(rng.choice([176, 192, 208, 224])))
    p["grid"] = Grid(shape, (dz, dxy, dxy))
    z0 = float(p["grid"].axis(0)[0])
    p["zb"] = z0 + above
    p["hc"] = (u(0, 25), u(-15, 10))  # LV axis in-plane position (x right, y down)
    p["tilt"], p["spin"] = rng.normal(0, 0.08), u(0, 2 * np.pi)
    p["ecc"] = u(0.9, 1.1)
    p["rv_dir"] = np.pi + u(0.15, 0.8)  # RV anterior (up) and to the image left
    p["rv_off"], p["rv_wrap"], p["rv_len"] = u(0.35, 0.6), u(1.1, 1.4), u(0.85, 1.0)
    # Outlines: LV endocardium, epicardium, RV, epicardial fat (patchy), lungs.
    p["pert"] = [Perturbation.random(rng, a, 3) for a in (0.06, 0.04, 0.08, 0.25, 0.12)]
    # Papillary muscles on the free wall, opposite the septum: (size, angle, angle).
    p["pap"] = (u(0.9, 1.4), *(p["rv_dir"] + np.pi + s * u(0.4, 0.8) for s in (-1, 1)))
    p["body"] = ((u(-10, 10), u(0, 20)), (u(150, 185), u(100, 125)), u(8, 16), u(18, 30))
    p["lungs"] = [(s * u(68, 88), u(5, 25), u(34, 46), u(48, 66)) for s in (-1, 1)]
    # Clutter: lung vessels (bright dots) and mediastinal structures (oesophagus, veins, ...).
    p["dots"] = [(s * u(50, 100), u(-30, 60), u(-60, 60), u(2, 4), u(0.4, 0.8))
                 for s in rng.choice([-1, 1], 12)]  # fmt: skip
    p["blobs"] = [(u(-50, 50), u(-40, 50), u(-60, 60), u(5, 12), u(0.2, 0.8)) for _ in range(5)]
    p["aorta"] = (u(12, 30), u(45, 60), u(10, 14))
    p["liver"] = (u(-70, -35), u(-10, 25), p["zb"] + p["l"] + u(-15, 25), u(80, 110))
    p["stomach"] = (u(45, 75), u(-15, 15), p["zb"] + p["l"] + u(10, 40), u(25, 40), u(0.05, 0.8))
    p["atria"] = (u(-5, 10), u(5, 20), u(20, 30), u(28, 38))
    base = {"blood": BLOOD, "myo": MYO, "fat": FAT, "liver": LIVER, "muscle": MUSCLE}
    p["tissue"] = {k: v * u(0.88, 1.12) for k, v in base.items()}
    p["info"] = {"ED": 1, "ES": int(rng.integers(8, 17)), "Group": group,
                 "Height": round(u(150, 195), 1), "NbFrame": int(rng.integers(25, 36)),
                 "Weight": round(u(50, 110), 1)}  # fmt: skip
    return p


def _render(p: dict, phase: str) -> tuple[np.ndarray, np.ndarray]:
    """Tissue signal (float32) and ACDC label map (uint8) of one frame, both ``(Z, Y, X)``."""
    grid: Grid = p["grid"]
    v = _ventricles(p, phase)
    tis = p["tissue"]
    image = np.zeros(grid.shape, np.float32)
    (bx, by), (brx, bry), skin, wall = p["body"]
    draw(image, tis["fat"], grid, (bx, by, 0.0), (brx, bry, 500.0), edge=2.0)
    draw(image, tis["muscle"], grid, (bx, by, 0.0), (brx - skin, bry - skin, 500.0), edge=2.0)
    cavity = (brx - skin - wall, bry - skin - wall, 500.0)
    draw(image, tis["fat"] * 0.8, grid, (bx, by, 0.0), cavity, edge=2.0)
    for lx, ly, lrx, lry in p["lungs"]:
        draw(image, LUNG, grid, (lx, ly, 0.0), (lrx, lry, 500.0), perturb=p["pert"][4])
    for x, y, z, r, val in p["dots"] + p["blobs"]:
        draw(image, val, grid, (x, y, z), (r, r, 1.5 * r))
    # Spine (vertebral body, bright canal) and descending aorta, posterior.
    spine_y = by + bry - skin - wall - 25
    draw(image, 0.06, grid, (bx, spine_y, 0.0), (19, 17, 500.0))
    draw(image, 0.38, grid, (bx, spine_y, 0.0), (16.5, 14.5, 500.0))
    draw(image, 0.75, grid, (bx, spine_y + 26, 0.0), (7, 6, 500.0))
    ax, ay, ar = p["aorta"]
    draw(image, tis["blood"], grid, (bx + ax, spine_y - ay + 28, 0.0), (ar, ar, 500.0))
    lx, ly, lz, lr = p["liver"]
    draw(image, tis["liver"], grid, (lx, ly, lz + lr * 0.6), (lr, lr * 0.8, lr * 0.7))
    sx, sy, sz, sr, sv = p["stomach"]
    draw(image, sv, grid, (sx, sy, sz + sr), (sr, sr * 0.8, sr))

    hx, hy = p["hc"]
    rot = rotation(p["spin"], p["tilt"])
    centre = (hx, hy, v["zb"])
    below_base = (0.0, 1e4)
    epi_r = (v["rc"] + v["t"], (v["rc"] + v["t"]) * p["ecc"], v["l"] + 0.4 * v["t"])
    endo_r = (v["rc"], v["rc"] * p["ecc"], v["l"])
    # Atria and great vessels above the base: blood as bright as the ventricles, no label.
    atx, aty, atz, atr = p["atria"]
    draw(image, tis["blood"], grid, (hx + atx, hy + aty, v["zb"] - atz), (atr, atr * 0.85, atz))
    # Epicardial fat, then the myocardium, then the cavities.
    fat_r = tuple(r + 4.0 for r in epi_r)
    draw(image, tis["fat"], grid, centre, fat_r, rot=rot, perturb=p["pert"][3], z_range=below_base)

    label = np.zeros(grid.shape, np.uint8)
    # RV: an ellipsoid offset towards the RV side, minus the LV epicardium -> a crescent.
    e = epi_r[0]
    off = p["rv_off"] * e
    # The RV frame shares the LV's long axis, so both are cut by the same base plane.
    rv_rot = rot @ rotation(p["rv_dir"] - p["spin"])
    shift = rv_rot[:, 0] * off  # (x, y, z) offset towards the RV, within the base plane
    rv_c = (hx + shift[0], hy + shift[1], v["zb"] + shift[2])
    rv_r = (e + v["w"] - off, e * p["rv_wrap"], v["l"] * p["rv_len"])
    wall_r = (rv_r[0] + 3.0, rv_r[1] + 3.0, rv_r[2] + 3.0)
    draw(
        image, tis["myo"], grid, rv_c, wall_r, rot=rv_rot, perturb=p["pert"][2], z_range=below_base
    )
    rv = ellipsoid_region(grid, rv_c, rv_r, rot=rv_rot, perturb=p["pert"][2], z_range=below_base)
    if rv is not None:
        win, m = rv
        image[win] += m * (np.float32(tis["blood"]) - image[win])
        label[win][m >= 0.5] = 1
    # LV wall (closed over the apex) and cavity; papillary muscles inside carry the LV label.
    epi = ellipsoid_region(grid, centre, epi_r, rot=rot, perturb=p["pert"][1], z_range=below_base)
    if epi is not None:
        win, m = epi
        image[win] += m * (np.float32(tis["myo"]) - image[win])
        label[win][m >= 0.5] = 2
    endo = ellipsoid_region(grid, centre, endo_r, rot=rot, perturb=p["pert"][0], z_range=below_base)
    if endo is not None:
        win, m = endo
        image[win] += m * (np.float32(tis["blood"]) - image[win])
        label[win][m >= 0.5] = 3
        for a in p["pap"][1:]:
            pc = (hx + 0.62 * v["rc"] * np.cos(a), hy + 0.62 * v["rc"] * np.sin(a),
                  v["zb"] + 0.45 * v["l"])  # fmt: skip
            size = p["pap"][0] * (v["rc"] / p["rc"]) ** -0.5  # papillaries bulk up in systole
            draw(image, tis["myo"], grid, pc, (3.5 * size, 3.5 * size, 0.3 * v["l"]), rot=rot)
    return image, label


def make_cardiac_patient(
    rng: np.random.Generator,
    noise_rngs: tuple[np.random.Generator, np.random.Generator],
    group: str = "NOR",
) -> tuple[dict, dict[str, mr.PhantomVolume]]:
    """Draw one patient: its ``Info.cfg`` fields and the ED and ES volumes.

    Args:
        rng: draws the anatomy, textures and coil field (shared by both frames).
        noise_rngs: one generator per frame (ED, ES) for the acquisition noise.
        group: ACDC disease group, a key of :data:`GROUPS`.

    Returns:
        ``(info, {"ED": volume, "ES": volume})``; images int16, labels uint8 in {0, 1, 2, 3},
        ``(Z, Y, X)``, slice 0 at the base side.
    """
    if group not in GROUPS:
        raise ValueError(f"group must be one of {list(GROUPS)}, got {group!r}")
    p = _draw_patient(rng, group)
    grid = p["grid"]
    texture = 1.0 + 0.05 * mr.smooth_field(grid, rng, (10.0, 60.0), components=10)
    texture += 0.03 * mr.mottle(grid, rng)
    bias = mr.bias_field(grid, rng, rng.uniform(0.2, 0.45))
    sigma, peak = rng.uniform(0.02, 0.04), rng.uniform(250, 600)
    frames = {}
    for phase, nrng in zip(("ED", "ES"), noise_rngs, strict=True):
        signal, label = _render(p, phase)
        image = mr.rician(signal * texture * bias, sigma, nrng)
        frames[phase] = mr.PhantomVolume(mr.to_uint(image, peak, np.int16), label, grid.spacing)
    return p["info"], frames


def write_cardiac_phantoms(raw_dir: str | Path, cases: int = 20, seed: int = 0) -> list[Path]:
    """Write ``cases`` phantom patients in ACDC's official layout into ``raw_dir``.

    For patient ``k`` (numbered from 001): ``patientNNN/Info.cfg`` (ED, ES, Group, Height,
    NbFrame, Weight) and ``patientNNN_frameFF.nii.gz`` + ``patientNNN_frameFF_gt.nii.gz`` for
    the ED and ES frames (the 4-D cine file of the real set is not written). The disease groups
    take turns (NOR, MINF, DCM, HCM, RV, NOR, ...), so any five patients are balanced. Patient
    ``k`` depends only on ``(seed, k)``.

    Returns:
        The patient folders, in order.
    """
    if cases < 1:
        raise ValueError(f"cases must be >= 1, got {cases}")
    raw_dir = Path(raw_dir)
    folders = []
    for i in range(cases):
        name = f"patient{i + 1:03d}"
        info, frames = make_cardiac_patient(
            np.random.default_rng([seed, i, 0]),
            (np.random.default_rng([seed, i, 1]), np.random.default_rng([seed, i, 2])),
            group=list(GROUPS)[i % len(GROUPS)],
        )
        folder = raw_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "Info.cfg").write_text("".join(f"{k}: {v}\n" for k, v in info.items()))
        for phase, vol in frames.items():
            stem = folder / f"{name}_frame{info[phase]:02d}"
            mr.write_volume(vol.image, vol.spacing, Path(f"{stem}.nii.gz"))
            mr.write_volume(vol.label, vol.spacing, Path(f"{stem}_gt.nii.gz"))
        folders.append(folder)
    return folders
