"""ROI settings of the nnU-Net trainers (no nnU-Net needed): parsing, precedence, scaling."""

from __future__ import annotations

import pytest

from ctxseg.integrations.nnunet.settings import ContextCESettings, Length, parse_length


def test_parse_length_forms() -> None:
    assert parse_length("roi_size", 40) == Length((40,))
    assert parse_length("roi_size", "40") == Length((40,))
    assert parse_length("roi_size", " 8, 40,40 ") == Length((8, 40, 40))
    assert parse_length("roi_size", [8, 40, 40]) == Length((8, 40, 40))
    assert parse_length("roi_size", "50mm") == Length((50.0,), in_mm=True)
    assert parse_length("roi_size", "20, 50.5, 50 MM") == Length((20.0, 50.5, 50.0), in_mm=True)
    for bad in ("2.5", 2.5, "ten", True, "", "1,2,3,4", "-3", [1, -1]):
        with pytest.raises(ValueError, match="roi_size"):
            parse_length("roi_size", bad)


def test_lengths_in_voxels_and_mm_scale_per_output() -> None:
    spacing = (3.0, 0.75, 0.75)
    # 12 voxels: 12 at full resolution, 6 and 3 below on the pooled axes; halves round up.
    assert Length((12,)).voxels(spacing, (1, 1, 1), 1) == (12, 12, 12)
    assert Length((12,)).voxels(spacing, (1, 0.5, 0.5), 1) == (12, 6, 6)
    assert Length((5,)).voxels(spacing, (0.5, 0.25, 0.25), 1) == (3, 1, 1)
    assert Length((1,)).voxels(spacing, (0.25, 0.25, 0.25), 0) == (0, 0, 0)
    # 30 mm: (10, 40, 40) voxels at full resolution, then scaled.
    assert Length((30.0,), True).voxels(spacing, (1, 1, 1), 1) == (10, 40, 40)
    assert Length((30.0,), True).voxels(spacing, (1, 0.5, 0.5), 1) == (10, 20, 20)
    # A 2-D configuration of a 3-D set: the in-plane (last) spacing values.
    assert Length((30.0,), True).voxels(spacing, (1, 1), 1) == (40, 40)
    with pytest.raises(ValueError, match="3 values for 2 axes"):
        Length((8, 40, 40)).voxels(spacing, (1, 1), 1)


def test_defaults_plans_entries_and_environment_in_that_order() -> None:
    default = ContextCESettings.resolve([], environ={})
    assert (default.roi, default.roi_size, default.lambda_roi) == ("dynamic", None, 1.0)
    assert default.margin == Length((0,)) and default.min_size == Length((1,))
    plans = {"roi": "static", "roi_size": 40, "lambda_roi": 0.5}
    config = {"roi_size": "30mm"}
    env = {"CTXSEG_LAMBDA_ROI": "2", "CTXSEG_ROI_MARGIN": " "}  # blank: not set
    s = ContextCESettings.resolve([("plans", plans), ("config", config), ("none", None)], env)
    assert (s.roi, s.roi_size, s.lambda_roi) == ("static", Length((30.0,), True), 2.0)
    assert s.describe() == (
        "roi=static roi_size=30mm lambda_roi=2 "
        "(lambda_roi from $CTXSEG_LAMBDA_ROI, roi from plans, roi_size from config)"
    )
    s = ContextCESettings.resolve([("plans", plans)], {"CTXSEG_ROI": "Dynamic"})
    assert s.roi == "dynamic"


def test_context_kwargs_per_output() -> None:
    s = ContextCESettings.resolve([], {"CTXSEG_ROI_MARGIN": "4", "CTXSEG_ROI_MIN_SIZE": "3mm"})
    kwargs = s.context_kwargs((3.0, 1.0, 1.0), (1, 0.5, 0.5), (16, 64, 64))
    assert kwargs == {
        "roi": "dynamic",
        "margin": (4, 2, 2),
        "min_size": (1, 2, 2),
        "lambda_roi": 1.0,
    }
    s = ContextCESettings.resolve([], {"CTXSEG_ROI": "static", "CTXSEG_ROI_SIZE": "4,32,32"})
    kwargs = s.context_kwargs((3.0, 1.0, 1.0), (0.5, 0.25, 0.25), (16, 64, 64))
    assert kwargs["roi_size"] == (2, 8, 8)
    with pytest.raises(ValueError, match=r"\(40, 40\) voxels, larger than the patch \(32, 48\)"):
        ContextCESettings.resolve(
            [], {"CTXSEG_ROI": "static", "CTXSEG_ROI_SIZE": "40"}
        ).context_kwargs((1.0, 1.0), (1, 1), (32, 48))


def test_bad_settings_name_their_source() -> None:
    with pytest.raises(ValueError, match=r"\$CTXSEG_ROI: roi must be one of"):
        ContextCESettings.resolve([], {"CTXSEG_ROI": "box"})
    with pytest.raises(ValueError, match=r"\$CTXSEG_LAMBDA_ROI: lambda_roi must be a number >= 0"):
        ContextCESettings.resolve([], {"CTXSEG_LAMBDA_ROI": "-1"})
    with pytest.raises(ValueError, match=r"cfg: min_size must be >= 1 voxels"):
        ContextCESettings.resolve([("cfg", {"min_size": 0})], {})
    with pytest.raises(ValueError, match=r"cfg: unknown 'ctxseg' keys \['size'\]"):
        ContextCESettings.resolve([("cfg", {"size": 3})], {})
    with pytest.raises(ValueError, match="must be a dict"):
        ContextCESettings.resolve([("cfg", [1])], {})
    with pytest.raises(ValueError, match="a static ROI needs a size: set \\$CTXSEG_ROI_SIZE"):
        ContextCESettings.resolve([], {"CTXSEG_ROI": "static"})
