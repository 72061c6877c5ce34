"""CLI smoke run of the main job: ``ctxseg demo --quick``, then ``evaluate`` and ``predict`` on it.

One quick demo (three 1-epoch runs on a tiny phantom) serves every test here: its evaluation
numbers are recomputed from the saved predictions with direct metric calls, and its
checkpoints go through the ``evaluate`` and ``predict`` verbs.
"""

from __future__ import annotations

import csv
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
from ctxseg.engine.inference import predict_labels
from ctxseg.evaluation.demo import CONFIGS, METHODS, DemoSettings, _overrides
from ctxseg.metrics import dice_score, hausdorff_distance


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--quick", "--quiet", "--out", str(out)]) == 0
    return out, json.loads((out / "demo.json").read_text())


def _floats(row: dict, key: str) -> float:
    return float(row[key])


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-9, abs=1e-12)


def test_demo_writes_table_figure_and_runs(demo, capsys):
    out, result = demo
    assert [m["experiment"] for m in result["methods"]] == [e for e, _ in METHODS]
    lines = (out / "demo.md").read_text().splitlines()
    assert lines[0].startswith("| method | slice Dice")
    assert [line.split(" | ")[0] for line in lines[2:5]] == [f"| {label}" for _, label in METHODS]
    assert (out / "overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for method in result["methods"]:
        summary = json.loads((out / "runs" / method["experiment"] / "eval_test_best" /
                              "summary.json").read_text())  # fmt: skip
        assert summary["slice"]["mean"] == method["summary"]["slice"]["mean"]
        row = next(line for line in lines if line.startswith(f"| {method['label']} |"))
        assert row.split(" | ")[1] == f"{summary['slice']['mean']['dice']:.4f}"


def test_evaluate_equals_direct_metric_calls_on_saved_predictions(demo):
    out, result = demo
    eval_dir = out / "runs" / "unet_ce" / "eval_test_best"
    summary = json.loads((eval_dir / "summary.json").read_text())
    store = PreparedStore.open(summary["data_root"])
    pred, rows = np.load(eval_dir / "pred.npy"), np.load(eval_dir / "rows.npy")
    np.testing.assert_array_equal(rows, store.indices("test"))
    target = np.asarray(store.labels[rows])

    # The saved predictions are the best checkpoint's, on whole slices.
    model, _ = load_model(out / "runs" / "unet_ce" / "checkpoint_best.pt", "cpu")
    images = torch.from_numpy(np.asarray(store.images[rows]))[:, None]  # (N, 1, H, W)
    np.testing.assert_array_equal(predict_labels(model, images, 8, "cpu").numpy(), pred)

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
    finite = np.array(hd)[present]
    finite = finite[np.isfinite(finite)]
    assert _same(float(stats["hd"]["mean"]), float(finite.mean()) if finite.size else math.nan)

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
    run = out / "runs" / "unet_context_static"
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


def test_demo_settings_and_roi_scaling(tmp_path):
    with pytest.raises(ValueError, match="multiple of 32"):
        DemoSettings(size=48)
    with pytest.raises(ValueError, match="cases"):
        DemoSettings(cases=2)
    settings = DemoSettings(spacing=2.0)
    static = _overrides(CONFIGS / "unet_context_static.yaml", tmp_path, settings, 0)
    dynamic = _overrides(CONFIGS / "unet_context_dynamic.yaml", tmp_path, settings, 0)
    assert "loss.roi_size=25" in static  # 50 px of 1 mm = 25 px of 2 mm
    assert {"loss.margin=2", "loss.min_size=8"} <= set(dynamic)
    assert not any(o.startswith("loss.") for o in _overrides(CONFIGS / "unet_ce.yaml", tmp_path,
                                                               settings, 0))  # fmt: skip
