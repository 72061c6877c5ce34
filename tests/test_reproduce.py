"""``ctxseg reproduce``: statistics, strata and aggregation by hand, and one tiny real grid."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import wilcoxon

from ctxseg.cli import main
from ctxseg.evaluation import report
from ctxseg.evaluation.protocols import score
from ctxseg.evaluation.reproduce import GridPreset, reproduce
from ctxseg.evaluation.results import aggregate, case_scores, load_run
from ctxseg.evaluation.statistics import paired_wilcoxon, seed_spread
from ctxseg.evaluation.strata import cardiac_positions, size_strata
from test_evaluate import make_store


def test_paired_wilcoxon_by_hand() -> None:
    # Five positive differences: the exact two-sided p of the signed-rank test is 2 / 2**5.
    result = paired_wilcoxon([1.0, 2.0, 3.0, 4.0, 5.0], [0.5, 0.0, 0.0, 0.0, 0.0])
    assert result["n"] == 5 and result["median_diff"] == 3.0
    assert result["p_value"] == pytest.approx(2 / 32)
    # A NaN pair is dropped and counted; identical values give p = 1.
    same = paired_wilcoxon([0.3, 0.4, math.nan], [0.3, 0.4, 0.2])
    assert same["n"] == 2 and same["n_dropped"] == 1 and same["p_value"] == 1.0
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=12), rng.normal(size=12)
    assert paired_wilcoxon(a, b)["p_value"] == pytest.approx(wilcoxon(a - b).pvalue)
    with pytest.raises(ValueError, match="different lengths"):
        paired_wilcoxon([1.0], [1.0, 2.0])


def test_seed_spread_is_the_sample_standard_deviation() -> None:
    stats = seed_spread([0.80, 0.82, 0.84, math.nan])
    assert stats["mean"] == pytest.approx(0.82) and stats["std"] == pytest.approx(0.02)
    assert stats["n"] == 3 and stats["n_nan"] == 1
    assert math.isnan(seed_spread([0.5])["std"])


def test_size_strata_cut_the_present_slices_in_thirds() -> None:
    strata, (e1, e2) = size_strata(np.array([0, 10, 20, 30, 40, 50, 60, 0]))
    assert (e1, e2) == pytest.approx((26.6667, 43.3333), rel=1e-4)
    assert strata.tolist() == ["", "small", "small", "medium", "medium", "large", "large", ""]


def test_cardiac_positions_put_the_apex_at_the_small_cavity() -> None:
    # Case a: LV shrinks with the slice index (base first); case b: the other way round.
    rows = []
    for case, areas in (("a", [90, 80, 60, 40, 20, 5]), ("b", [0, 5, 20, 40, 60, 80, 90])):
        rows += [{"case": case, "slice_index": i, "target_px_LV": v, "target_px_RV": v // 2}
                 for i, v in enumerate(areas)]  # fmt: skip
    labels = cardiac_positions(rows, ["target_px_LV", "target_px_RV"], "target_px_LV").tolist()
    assert labels[:6] == ["basal", "basal", "mid", "mid", "apical", "apical"]
    assert labels[6:] == ["", "apical", "apical", "mid", "mid", "basal", "basal"]


def _evaluated_run(root: Path, store, pred: np.ndarray) -> Path:
    """A run folder holding what ``ctxseg evaluate`` writes for the predictions ``pred``."""
    rows = store.indices("test")
    per_slice, per_case, summary = score(store, rows, pred)
    folder = root / "eval_test_best"
    folder.mkdir(parents=True)
    report.write_csv(folder / "per_slice.csv", per_slice, list(per_slice[0]))
    report.write_csv(folder / "per_case.csv", per_case, list(per_case[0]))
    report.write_json(folder / "summary.json", summary)
    np.save(folder / "rows.npy", rows)
    np.save(folder / "pred.npy", pred)
    return root


def test_aggregate_by_hand_on_fake_runs(tmp_path: Path) -> None:
    store = make_store(tmp_path, num_classes=2, cases=4, depth=6, size=32)
    rows = store.indices("test")
    target = np.asarray(store.labels[rows])
    runs = []
    shifts = {("unet_ce", 0): 2, ("unet_ce", 1): 3, ("ctx", 0): 0, ("ctx", 1): 1}
    for (method, seed), shift in shifts.items():
        pred = np.roll(target, shift, axis=2)
        run = _evaluated_run(tmp_path / method / f"seed{seed}", store, pred)
        runs.append(load_run(method, seed, run))
    agg = aggregate(runs, reference="unet_ce")
    assert agg["methods"] == ["unet_ce", "ctx"] and agg["seeds"]["ctx"] == [0, 1]

    # The table: mean and sample sd over the two seeds of each run's own summary number.
    dice = [r.summary["slice"]["classes"]["outer"]["dice"]["mean"] for r in runs[:2]]
    cell = agg["table"]["unet_ce"]["outer"]["slice_dice"]
    assert cell["mean"] == pytest.approx(np.mean(dice))
    assert cell["std"] == pytest.approx(np.std(dice, ddof=1))

    # Per case: the mean over the case's slices with the structure, then over the seeds.
    case = store.case_ids("test")[0]
    per_seed = []
    for run in runs[2:]:
        values = [r["dice_outer"] for r in run.per_slice
                  if r["case"] == case and r["target_px_outer"] > 0]  # fmt: skip
        per_seed.append(np.mean(values))
        assert case_scores(run)[case]["outer"]["dice"] == pytest.approx(np.mean(values))
    assert agg["cases"]["ctx"][case]["outer"]["dice"] == pytest.approx(np.mean(per_seed))

    # The paired test runs over the test cases, ctx against CE.
    order = sorted(agg["cases"]["unet_ce"])
    a = [agg["cases"]["ctx"][c]["outer"]["dice"] for c in order]
    b = [agg["cases"]["unet_ce"][c]["outer"]["dice"] for c in order]
    test = agg["tests"]["ctx"]["outer"]["dice"]
    assert test == paired_wilcoxon(a, b) and test["n"] == 3
    assert test["median_diff"] > 0  # the smaller shift is the better method

    # Strata: every present test slice in exactly one size third, for every method alike.
    strata = agg["strata"]["size"]["ctx"]["outer"]
    present = int((target == 1).any(axis=(1, 2)).sum())
    assert sum(s["n"] for s in strata.values()) == present

    other_store = make_store(tmp_path / "x", num_classes=2, cases=5, depth=6, size=32)
    other_rows = other_store.indices("test")
    other = _evaluated_run(
        tmp_path / "other", other_store, np.asarray(other_store.labels[other_rows])
    )
    with pytest.raises(ValueError, match="other slices"):
        aggregate([runs[0], load_run("x", 0, other)])


def test_a_tiny_grid_end_to_end_resumes_and_reports(tmp_path: Path, capsys) -> None:
    preset = GridPreset(methods=("unet_ce", "unet_context_dynamic"), seeds=(0, 1), cases=4,
                        size=32, spacing=4.0, epochs=1)  # fmt: skip
    out = tmp_path / "grid"
    agg = reproduce(None, out, device="cpu", preset=preset)
    assert agg["failed"] == [] and set(agg["tests"]) == {"unet_context_dynamic"}
    text = (out / "results.md").read_text()
    for expected in ("U-Net CE", "U-Net context CE, dynamic ROI", "± ", "object-size thirds",
                     "Wilcoxon", "image diagonal", "budget: 1 epochs"):  # fmt: skip
        assert expected in text, expected
    assert (out / "boxplots.png").is_file() and (out / "overlays.png").is_file()
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    runs = [r for r in rows if r["kind"] == "run" and r["metric"] == "slice_dice"]
    assert len(runs) == 4
    summary = json.loads((out / "runs/unet_ce/seed1/eval_test_best/summary.json").read_text())
    ce1 = next(r for r in runs if r["method"] == "unet_ce" and r["seed"] == "1")
    assert float(ce1["value"]) == pytest.approx(summary["slice"]["mean"]["dice"])

    # Started again: nothing is trained or evaluated again.
    mtime = (out / "runs/unet_ce/seed0/checkpoint_last.pt").stat().st_mtime
    again = reproduce(None, out, device="cpu", preset=preset)
    assert (out / "runs/unet_ce/seed0/checkpoint_last.pt").stat().st_mtime == mtime
    assert json.loads((out / "grid.json").read_text())["outcomes"][0]["state"] == "done"
    assert report.to_jsonable(again["table"]) == report.to_jsonable(agg["table"])

    # More epochs: every run resumes from its checkpoint; --dry-run says so and trains nothing.
    longer = dataclasses.replace(preset, epochs=2)
    plan = reproduce(None, out, device="cpu", preset=longer, dry_run=True)
    assert plan["states"] == ["resume"] * 4 and plan["estimate_s"] > 0
    assert "estimated training time" in capsys.readouterr().out
    assert (out / "runs/unet_ce/seed0/checkpoint_last.pt").stat().st_mtime == mtime

    assert main(["reproduce", "--data", str(out / "data" / "phantom-prostate"),
                 "--methods", "nope", "--out", str(out)]) == 2  # fmt: skip
    assert "unknown method(s) ['nope']" in capsys.readouterr().err


def test_quick_grid_refuses_an_unknown_method_before_preparing_anything(tmp_path: Path) -> None:
    preset = GridPreset(methods=("unet_ce",), seeds=(0,), epochs=1, size=32, cases=3)
    with pytest.raises(ValueError, match=r"unknown method\(s\) \['unet_nope'\].*unet_ce"):
        reproduce(None, tmp_path / "out", methods=["unet_nope"], preset=preset)
    assert not (tmp_path / "out" / "data").exists()  # nothing prepared
