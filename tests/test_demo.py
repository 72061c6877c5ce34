"""CLI smoke run of the main job: ``ctxseg demo --quick``, then ``evaluate`` and ``predict`` on it.

One quick demo (three 1-epoch runs on a tiny phantom) serves every test here: its evaluation
numbers are recomputed from the saved predictions with direct metric calls, and its
checkpoints go through the ``evaluate`` and ``predict`` verbs.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from ctxseg.cli import main
from ctxseg.data.phantoms import write_prostate_phantoms
from ctxseg.data.store import PreparedStore
from ctxseg.engine.checkpoint import load_model
from ctxseg.engine.config import BUILTIN_CONFIGS, load_config
from ctxseg.engine.inference import predict_labels
from ctxseg.engine.precision import inference_fast_path
from ctxseg.evaluation.demo import DEMO, METHODS, QUICK_DEMO
from ctxseg.evaluation.methods import label_of
from ctxseg.evaluation.reproduce import scaled_roi_overrides
from ctxseg.metrics import dice_score, hausdorff_distance


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    return out, json.loads((out / "demo.json").read_text())


def _floats(row: dict, key: str) -> float:
    return float(row[key])


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-9, abs=1e-12)


def test_demo_writes_table_figure_and_runs(demo, capsys):
    out, result = demo
    assert result["methods"] == list(METHODS)
    lines = (out / "demo.md").read_text().splitlines()
    assert lines[0].startswith("| method | slice Dice")
    assert [line.split(" | ")[0] for line in lines[2:5]] == [f"| {label_of(m)}" for m in METHODS]
    assert (out / "overlays.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Seed-to-seed standard deviation" in (out / "demo.md").read_text()
    for method in METHODS:
        dice = []
        for seed in QUICK_DEMO.seeds:
            path = out / "runs" / method / f"seed{seed}" / "eval_test_best" / "summary.json"
            dice.append(json.loads(path.read_text())["slice"]["mean"]["dice"])
        row = next(line for line in lines if line.startswith(f"| {label_of(method)} |"))
        expected = f"{np.mean(dice):.4f} ± {np.std(dice, ddof=1):.4f}"
        assert row.split(" | ")[1] == expected


def test_evaluate_equals_direct_metric_calls_on_saved_predictions(demo):
    out, result = demo
    run = out / "runs" / "unet_ce" / "seed0"
    eval_dir = run / "eval_test_best"
    summary = json.loads((eval_dir / "summary.json").read_text())
    store = PreparedStore.open(summary["data_root"])
    pred, rows = np.load(eval_dir / "pred.npy"), np.load(eval_dir / "rows.npy")
    np.testing.assert_array_equal(rows, store.indices("test"))
    target = np.asarray(store.labels[rows])

    # The saved predictions are the best checkpoint's, on whole slices, on the run's fast path.
    model, ckpt = load_model(run / "checkpoint_best.pt", "cpu")
    fast = inference_fast_path(model, ckpt, "cpu")
    assert summary["precision"]["precision"] == fast.precision
    images = torch.from_numpy(np.array(store.images[rows]))[:, None]  # (N, 1, H, W)
    again = predict_labels(model, images, 8, "cpu", amp=fast.bf16, channels_last=fast.channels_last)
    np.testing.assert_array_equal(again.numpy(), pred)

    with open(eval_dir / "per_slice.csv", newline="") as fh:
        per_slice = list(csv.DictReader(fh))
    dice = [dice_score(p, t, [1])[1] for p, t in zip(pred, target, strict=True)]
    hd = [hausdorff_distance(p == 1, t == 1) for p, t in zip(pred, target, strict=True)]
    for row, d, h in zip(per_slice, dice, hd, strict=True):
        assert _same(_floats(row, "dice_prostate"), d) and _same(_floats(row, "hd_prostate"), h)
    present = (target == 1).any(axis=(1, 2))
    stats = summary["slice"]["classes"]["prostate"]
    assert stats["dice"]["n"] == present.sum()
    assert stats["dice"]["mean"] == pytest.approx(np.mean(np.array(dice)[present]))
    hd_present = np.array(hd)[present]
    finite = hd_present[np.isfinite(hd_present)]
    penalised = np.where(np.isinf(hd_present), math.hypot(*target.shape[1:]), hd_present)
    assert _same(float(stats["hd"]["mean"]), float(penalised.mean()))
    assert _same(
        float(stats["hd"]["mean_detected"]), float(finite.mean()) if finite.size else math.nan
    )

    with open(eval_dir / "per_case.csv", newline="") as fh:
        per_case = list(csv.DictReader(fh))
    values = []
    for row in per_case:
        case = store.case(row["case"])
        at = int(np.searchsorted(rows, case["first"]))  # the case's position in the saved rows
        p, t = pred[at : at + case["num_slices"]], target[at : at + case["num_slices"]]
        expected = {
            "dice": dice_score(p, t, [1])[1],
            "hd": hausdorff_distance(p == 1, t == 1, spacing=case["spacing"]),
            "hd95": hausdorff_distance(p == 1, t == 1, spacing=case["spacing"], percentile=95),
        }
        for key, value in expected.items():
            assert _same(_floats(row, f"{key}_prostate"), value)
        values.append(expected["dice"])
    assert summary["volume"]["classes"]["prostate"]["dice"]["mean"] == pytest.approx(
        np.mean(values)
    )


def test_cli_evaluate_val_last_and_predict(demo, tmp_path, capsys):
    out, _ = demo
    run = out / "runs" / "unet_context_static" / "seed1"
    assert (
        main(["evaluate", str(run), "--split", "val", "--checkpoint", "last", "--device", "cpu"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "slice (px)" in printed and "volume (mm)" in printed
    summary = json.loads((run / "eval_val_last" / "summary.json").read_text())
    assert summary["split"] == "val" and summary["num_cases"] == 1

    (scan,) = write_prostate_phantoms(tmp_path / "raw", cases=1, seed=11)
    code = main(["predict", "--checkpoint", str(run / "checkpoint_best.pt"), "--input",
                 str(scan), "--output", str(tmp_path / "pred"), "--device", "cpu"])  # fmt: skip
    assert code == 0
    image, label = (
        sitk.ReadImage(str(scan)),
        sitk.ReadImage(str(tmp_path / "pred" / "Case00_pred.mha")),
    )
    assert label.GetSize() == image.GetSize()
    np.testing.assert_allclose(label.GetSpacing(), image.GetSpacing())
    np.testing.assert_allclose(label.GetOrigin(), image.GetOrigin())
    np.testing.assert_allclose(label.GetDirection(), image.GetDirection())

    assert main(["evaluate", str(tmp_path), "--device", "cpu"]) == 2  # no checkpoint: one line
    assert "checkpoint_best.pt" in capsys.readouterr().err


def test_preset_settings_and_roi_scaling():
    with pytest.raises(ValueError, match="multiple of 32"):
        dataclasses.replace(DEMO, size=48)
    with pytest.raises(ValueError, match="cases"):
        dataclasses.replace(DEMO, cases=2)
    configs = BUILTIN_CONFIGS / "phantom-prostate"
    static = scaled_roi_overrides(load_config(configs / "unet_context_static.yaml"), 2.0)
    dynamic = scaled_roi_overrides(load_config(configs / "unet_context_dynamic.yaml"), 2.0)
    assert static == ["loss.roi_size=25"]  # 50 px of 1 mm = 25 px of 2 mm
    assert {"loss.margin=2", "loss.min_size=8"} <= set(dynamic)
    assert scaled_roi_overrides(load_config(configs / "unet_ce.yaml"), 2.0) == []
    glgan = scaled_roi_overrides(load_config(configs / "seg_glgan_static.yaml"), 2.0)
    assert glgan == ["adversarial.roi_size=40"]  # 25 px is below the pooled branch's 40
