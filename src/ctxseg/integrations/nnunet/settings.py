"""ROI settings of the nnU-Net trainers: environment variables, a plans entry, defaults.

No nnU-Net import here, so the settings can be read and tested without it.

Sources, later ones winning: the defaults (dynamic ROI, margin 0, min_size 1, lambda 1); the
plans file's top-level ``"ctxseg"`` dict; the ``"ctxseg"`` dict of the configuration being
trained (``plans["configurations"]["3d_fullres"]["ctxseg"]``); the environment variables
``CTXSEG_ROI``, ``CTXSEG_ROI_SIZE``, ``CTXSEG_ROI_MARGIN``, ``CTXSEG_ROI_MIN_SIZE`` and
``CTXSEG_LAMBDA_ROI``.

Lengths (``roi_size``, ``margin``, ``min_size``) are voxels of the configuration's full
resolution (the network's output; nnU-Net's ``spacing`` of that configuration): one int for
every axis (``40``), one per axis (``"8,40,40"`` or ``[8, 40, 40]``), or millimetres with an
``mm`` suffix (``"50mm"``, a physical cube: fewer voxels along a coarse axis;
``"20,50,50mm"``). At each deep-supervision output the lengths are scaled by that output's
per-axis factor and rounded (halves up), so the ROI covers the same physical region.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ctxseg.roi import ROI_MODES

__all__ = [
    "ENV_VARS",
    "PLANS_KEY",
    "ContextCESettings",
    "Length",
    "parse_length",
]

PLANS_KEY = "ctxseg"
ENV_VARS = {
    "roi": "CTXSEG_ROI",
    "roi_size": "CTXSEG_ROI_SIZE",
    "margin": "CTXSEG_ROI_MARGIN",
    "min_size": "CTXSEG_ROI_MIN_SIZE",
    "lambda_roi": "CTXSEG_LAMBDA_ROI",
}
_LENGTH_MINIMUM = {"roi_size": 1, "margin": 0, "min_size": 1}


@dataclass(frozen=True)
class Length:
    """An ROI length: one value for every axis or one per axis, in voxels or in mm."""

    values: tuple[float, ...]
    in_mm: bool = False

    def voxels(
        self, spacing: Sequence[float], scale: Sequence[float], minimum: int
    ) -> tuple[int, ...]:
        """Voxels per axis at an output whose per-axis factor to full resolution is ``scale``.

        Args:
            spacing: full-resolution voxel size in mm per axis (used for mm lengths).
            scale: per-axis factor of the output (1 at full resolution, 0.5 one level down).
            minimum: the fewest voxels an axis may get.

        Raises:
            ValueError: per-axis values whose count is not the number of axes.
        """
        ndim = len(scale)
        values = self.values * ndim if len(self.values) == 1 else self.values
        if len(values) != ndim:
            raise ValueError(f"{self} has {len(self.values)} values for {ndim} axes")
        if self.in_mm:
            values = tuple(v / s for v, s in zip(values, spacing[-ndim:], strict=True))
        return tuple(
            max(minimum, math.floor(v * f + 0.5)) for v, f in zip(values, scale, strict=True)
        )

    def __str__(self) -> str:
        text = ",".join(f"{v:g}" for v in self.values)
        return f"{text}mm" if self.in_mm else text


def parse_length(name: str, value: object) -> Length:
    """Read a length from an env string or a plans value (see the module docstring).

    Raises:
        ValueError: naming ``name`` and the value, for anything but non-negative numbers
            (integers unless in mm).
    """
    in_mm = False
    items: list[object]
    if isinstance(value, str):
        text = value.strip().lower()
        if text.endswith("mm"):
            in_mm, text = True, text[:-2].strip()
        items = [part.strip() for part in text.split(",")]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    numbers: list[float] = []
    for item in items:
        try:
            if isinstance(item, bool):
                raise ValueError
            number = float(item) if in_mm else _as_int(item)
        except (TypeError, ValueError):
            unit = "numbers followed by mm" if in_mm else "ints (or a length in mm: '50mm')"
            raise ValueError(f"{name} must be {unit}, got {value!r}") from None
        if not (number >= 0 and math.isfinite(number)):
            raise ValueError(f"{name} must be >= 0, got {value!r}")
        numbers.append(number)
    if not numbers or len(numbers) > 3:
        raise ValueError(f"{name} needs 1 to 3 values, got {value!r}")
    return Length(tuple(numbers), in_mm)


def _as_int(item: object) -> int:
    """An int from an int or a string of digits; anything else (2.5, '2.5') raises."""
    if isinstance(item, int):
        return item
    if isinstance(item, str) and item.lstrip("+").isdigit():
        return int(item)
    raise ValueError(item)


@dataclass(frozen=True)
class ContextCESettings:
    """The context CE's ROI settings (SPEC §5-6) for an nnU-Net configuration.

    Attributes:
        roi: ``"static"`` or ``"dynamic"`` (the default).
        roi_size: static ROI side (required for static; no default: it depends on the data).
        margin: dynamic ROI, added around the tight box.
        min_size: dynamic ROI, minimum side.
        lambda_roi: weight of the ROI term.
        origin: where each setting came from, for the training log.
    """

    roi: str = "dynamic"
    roi_size: Length | None = None
    margin: Length = Length((0,))
    min_size: Length = Length((1,))
    lambda_roi: float = 1.0
    origin: Mapping[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def resolve(
        cls,
        plans_entries: Sequence[tuple[str, Mapping[str, object] | None]] = (),
        environ: Mapping[str, str] | None = None,
    ) -> ContextCESettings:
        """Merge the sources: defaults, then each plans entry in order, then the environment.

        Args:
            plans_entries: ``(where, entry)`` pairs, e.g. ``("plans", plans.get("ctxseg"))``;
                None entries are skipped.
            environ: the environment (``os.environ`` when None).

        Raises:
            ValueError: an unknown key in a plans entry, a bad value (naming its source), or a
                static ROI without a size.
        """
        environ = os.environ if environ is None else environ
        raw: dict[str, tuple[object, str]] = {}
        for where, entry in plans_entries:
            if entry is None:
                continue
            if not isinstance(entry, Mapping):
                raise ValueError(f"{where}: the {PLANS_KEY!r} entry must be a dict, got {entry!r}")
            unknown = sorted(set(entry) - set(ENV_VARS))
            if unknown:
                raise ValueError(
                    f"{where}: unknown {PLANS_KEY!r} keys {unknown}; known: {sorted(ENV_VARS)}"
                )
            raw.update({key: (value, where) for key, value in entry.items()})
        for key, var in ENV_VARS.items():
            if environ.get(var, "").strip():
                raw[key] = (environ[var], f"${var}")
        values: dict[str, object] = {}
        for key, (value, where) in raw.items():
            try:
                values[key] = _parse(key, value)
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from None
        settings = cls(**values, origin={key: where for key, (_, where) in raw.items()})
        if settings.roi == "static" and settings.roi_size is None:
            raise ValueError(
                f"a static ROI needs a size: set ${ENV_VARS['roi_size']} (e.g. 40 or 50mm) or "
                f"'roi_size' in the plans' {PLANS_KEY!r} entry"
            )
        return settings

    def context_kwargs(
        self, spacing: Sequence[float], scale: Sequence[float], patch_size: Sequence[int]
    ) -> dict[str, object]:
        """``ContextLoss`` arguments for one output (per-axis voxel sizes at that scale).

        Args:
            spacing: the configuration's full-resolution spacing (its last axes are used when
                it has more values than the patch, as a 2-D configuration of a 3-D set may).
            scale: per-axis factor of this output to full resolution.
            patch_size: the configuration's patch size at full resolution.

        Raises:
            ValueError: a static ROI larger than the patch at this scale.
        """
        kwargs: dict[str, object] = {
            "roi": self.roi,
            "margin": self.margin.voxels(spacing, scale, 0),
            "min_size": self.min_size.voxels(spacing, scale, 1),
            "lambda_roi": self.lambda_roi,
        }
        if self.roi == "static":
            assert self.roi_size is not None  # resolve() guarantees it
            sides = self.roi_size.voxels(spacing, scale, 1)
            extent = tuple(round(p * f) for p, f in zip(patch_size, scale, strict=True))
            if any(s > e for s, e in zip(sides, extent, strict=True)):
                raise ValueError(
                    f"static ROI {self.roi_size} is {sides} voxels, larger than the patch "
                    f"{extent} at scale {tuple(scale)}; choose a smaller "
                    f"${ENV_VARS['roi_size']} (patch size {tuple(patch_size)})"
                )
            kwargs["roi_size"] = sides
        return kwargs

    def describe(self) -> str:
        """One line for the training log: every setting and where it came from."""
        parts = [f"roi={self.roi}"]
        if self.roi == "static":
            parts.append(f"roi_size={self.roi_size}")
        else:
            parts += [f"margin={self.margin}", f"min_size={self.min_size}"]
        parts.append(f"lambda_roi={self.lambda_roi:g}")
        origins = ", ".join(f"{k} from {v}" for k, v in sorted(self.origin.items())) or "defaults"
        return f"{' '.join(parts)} ({origins})"


def _parse(key: str, value: object) -> object:
    """One setting from its env string or plans value."""
    if key == "roi":
        roi = str(value).strip().lower()
        if roi not in ROI_MODES:
            raise ValueError(f"roi must be one of {ROI_MODES}, got {value!r}")
        return roi
    if key == "lambda_roi":
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"lambda_roi must be a number >= 0, got {value!r}") from None
        if not (number >= 0 and math.isfinite(number)) or isinstance(value, bool):
            raise ValueError(f"lambda_roi must be a number >= 0, got {value!r}")
        return number
    length = parse_length(key, value)
    if not length.in_mm and min(length.values) < _LENGTH_MINIMUM[key]:
        raise ValueError(f"{key} must be >= {_LENGTH_MINIMUM[key]} voxels, got {value!r}")
    return length
