"""The methods of the paper's Table 1 (SPEC §2): config names, labels and the paper's figures.

A method is a shipped experiment config, ``configs/<dataset>/<name>.yaml``; this module only
names them in the paper's order and holds the paper's numbers to print beside ours.
"""

from __future__ import annotations

from dataclasses import dataclass

from ctxseg.engine.config import BUILTIN_CONFIGS

__all__ = [
    "PAPER_TABLE1",
    "SHAPE_VARIANTS",
    "TABLE1",
    "Method",
    "available_methods",
    "label_of",
    "paper_figures",
]


@dataclass(frozen=True)
class Method:
    """One row of Table 1: the experiment config's name and how the paper calls it."""

    name: str
    label: str


#: Table 1 in the paper's order, then the supplement's row.
TABLE1 = (
    Method("unet_ce", "U-Net CE"),
    Method("unet_wce", "U-Net weighted CE"),
    Method("unet_dice", "U-Net Dice"),
    Method("unet_focal", "U-Net focal"),
    Method("unet_context_static", "U-Net context CE, static ROI"),
    Method("unet_context_dynamic", "U-Net context CE, dynamic ROI"),
    Method("gan", "GAN"),
    Method("seg_glgan_static", "Seg-GLGAN, static ROI"),
    Method("seg_glgan_dynamic", "Seg-GLGAN, dynamic ROI"),
    Method("seg_glgan_static_context", "Seg-GLGAN static ROI + context CE (supplement)"),
)

#: The adversarial rows with the remedy for the discriminator's inputs (issue 9,
#: docs/seg-glgan.md): straight-through one-hot fake maps and the image as a D channel.
SHAPE_VARIANTS = (
    Method("gan_shape", "GAN, shape D (one-hot fakes + image)"),
    Method("seg_glgan_static_shape", "Seg-GLGAN, static ROI, shape D"),
    Method("seg_glgan_dynamic_shape", "Seg-GLGAN, dynamic ROI, shape D"),
)

# Murugesan et al., ISBI 2020, Table 1 (and the supplement's context-CE generator row):
# data set -> experiment config name -> (Dice, HD).
PAPER_TABLE1: dict[str, dict[str, tuple[float, float]]] = {
    "promise12": {
        "unet_ce": (0.7964, 9.11),
        "unet_wce": (0.8374, 7.82),
        "unet_dice": (0.8166, 8.25),
        "unet_focal": (0.8269, 8.00),
        "unet_context_static": (0.861, 6.91),
        "unet_context_dynamic": (0.861, 7.30),
        "gan": (0.7877, 8.76),
        "seg_glgan_static": (0.8019, 8.40),
        "seg_glgan_dynamic": (0.86, 7.01),
        "seg_glgan_static_context": (0.8158, 7.93),
    },
    "acdc": {
        "unet_ce": (0.822, 5.69),
        "unet_wce": (0.8385, 5.31),
        "unet_focal": (0.8245, 5.48),
        "unet_context_static": (0.85, 4.55),
        "unet_context_dynamic": (0.8402, 5.30),
        "gan": (0.833, 4.70),
        "seg_glgan_static": (0.835, 4.69),
        "seg_glgan_dynamic": (0.856, 4.38),
    },
}


def label_of(name: str) -> str:
    """The paper's name of a method, or the config name for a method outside Table 1."""
    return next((m.label for m in TABLE1 + SHAPE_VARIANTS if m.name == name), name)


def paper_figures(dataset: str, name: str) -> tuple[float, float] | None:
    """The paper's (Dice, HD) of a method on a data set, None where the paper has none."""
    return PAPER_TABLE1.get(dataset, {}).get(name)


def available_methods(dataset: str) -> list[str]:
    """The experiment configs shipped for a data set (Table 1 order first, then the others).

    Raises:
        ValueError: no shipped configs for ``dataset`` (the message lists the data sets).
    """
    folder = BUILTIN_CONFIGS / dataset
    if not folder.is_dir():
        known = sorted(p.name for p in BUILTIN_CONFIGS.iterdir() if p.is_dir())
        raise ValueError(f"no shipped configs for data set {dataset!r}; known: {known}")
    names = sorted(p.stem for p in folder.glob("*.yaml"))
    order = [m.name for m in TABLE1 if m.name in names]
    return order + [n for n in names if n not in order]
