"""Evaluation protocols (SPEC §8): numbers equal direct metric calls, misses are counted."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from ctxseg.data.store import PreparedCase, PreparedStore, write_store
from ctxseg.engine.checkpoint import save_checkpoint
from ctxseg.engine.config import config_from_dict
from ctxseg.engine.inference import predict_labels
from ctxseg.evaluation import report
from ctxseg.evaluation.evaluate import evaluate_run, summary_rows
from ctxseg.evaluation.protocols import score
from ctxseg.metrics import dice_score, hausdorff_distance
from ctxseg.models import create_model


def _disc(size: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def make_store(tmp_path, num_classes=3, cases=3, depth=5, size=32, seed=0) -> PreparedStore:
    """Cases of stacked discs (class 1 a ring around class 2), first and last slice empty."""
    rng = np.random.default_rng(seed)
    prepared = []
    for i in range(cases):
        label = np.zeros((depth, size, size), np.uint8)
        for z in range(1, depth - 1):
            cy, cx = rng.uniform(10, size - 10, 2)
            label[z][_disc(size, cy, cx, rng.uniform(4, 8))] = 1
            if num_classes > 2:
                label[z][_disc(size, cy, cx, rng.uniform(1.5, 3.5))] = 2
        image = label / max(num_classes - 1, 1) * 0.8 + rng.uniform(0, 0.2, label.shape)
        prepared.append(
            PreparedCase(
                case=f"Case{i:02d}",
                patient=f"P{i}",
                phase=None,
                image=image.astype(np.float32),
                label=label,
                spacing=(2.5, 0.8, 1.2 + 0.1 * i),
                geometry={},
            )
        )
    names = ["background", "outer", "inner"][:num_classes]
    ids = [c.case for c in prepared]
    splits = {"seed": 0, "train": ids[:1], "val": [], "test": ids[1:]}
    write_store(
        tmp_path / "store",
        prepared,
        {"name": "discs", "labels": dict((str(k), n) for k, n in enumerate(names))},
        splits,
    )
    return PreparedStore.open(tmp_path / "store")


def perturb(target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A prediction with shifts, one missed class-1 slice and one false-positive slice."""
    pred = target.copy()
    for i in range(len(pred)):
        pred[i] = np.roll(pred[i], tuple(rng.integers(-2, 3, 2)), axis=(0, 1))
    fg = np.flatnonzero((target == 1).any(axis=(1, 2)))
    pred[fg[0]][pred[fg[0]] == 1] = 0  # class 1 missed on a slice that has it
    empty = np.flatnonzero(~(target > 0).any(axis=(1, 2)))
    pred[empty[0], 2:5, 2:5] = 1  # class 1 predicted on a slice without foreground
    return pred


def test_score_equals_direct_metric_calls(tmp_path):
    store = make_store(tmp_path)
    rows = store.indices("test")
    target = np.asarray(store.labels[rows])
    pred = perturb(target, np.random.default_rng(1))
    per_slice, per_case, summary = score(store, rows, pred)

    assert [r["row"] for r in per_slice] == rows.tolist()
    for name, c in (("outer", 1), ("inner", 2)):
        dice = np.array([dice_score(p, t, [c])[c] for p, t in zip(pred, target, strict=True)])
        hd = np.array(
            [hausdorff_distance(p == c, t == c) for p, t in zip(pred, target, strict=True)]
        )
        np.testing.assert_array_equal([r[f"dice_{name}"] for r in per_slice], dice)
        np.testing.assert_array_equal([r[f"hd_{name}"] for r in per_slice], hd)
        present = (target == c).any(axis=(1, 2))
        stats = summary["slice"]["classes"][name]
        assert stats["dice"]["n"] == present.sum()
        assert stats["dice"]["mean"] == pytest.approx(dice[present].mean())
        finite = hd[present & np.isfinite(hd)]
        penalised = np.where(np.isinf(hd), math.hypot(32, 32), hd)[present]
        assert stats["hd"]["mean"] == pytest.approx(penalised.mean())
        assert stats["hd"]["mean_detected"] == pytest.approx(finite.mean())
        assert stats["hd"]["n_missed"] == np.isinf(hd[present]).sum()
        assert stats["false_positive"] == np.sum(~present & (pred == c).any(axis=(1, 2)))

    outer = summary["slice"]["classes"]["outer"]
    assert outer["hd"]["n_missed"] == 1 and outer["false_positive"] == 1  # the planted errors
    assert summary["slice"]["mean"]["dice"] == pytest.approx(
        np.mean([summary["slice"]["classes"][n]["dice"]["mean"] for n in ("outer", "inner")])
    )

    assert [r["case"] for r in per_case] == store.case_ids("test")
    start = 0
    for entry in per_case:
        case = store.case(entry["case"])
        span = slice(start, start + case["num_slices"])
        start += case["num_slices"]
        for name, c in (("outer", 1), ("inner", 2)):
            p, t = pred[span] == c, target[span] == c
            assert entry[f"dice_{name}"] == dice_score(pred[span], target[span], [c])[c]
            assert entry[f"hd_{name}"] == hausdorff_distance(p, t, spacing=case["spacing"])
            assert entry[f"hd95_{name}"] == hausdorff_distance(
                p, t, spacing=case["spacing"], percentile=95
            )
    for name in ("outer", "inner"):
        values = [r[f"hd95_{name}"] for r in per_case]
        assert summary["volume"]["classes"][name]["hd95"]["mean"] == pytest.approx(np.mean(values))
    assert summary["notes"] == []  # the store's spacing is real: no assumption to state


def test_score_hand_computed(tmp_path):
    """Two foreground slices of 2 classes; one shifted by a pixel, one missed entirely."""
    store = make_store(tmp_path, num_classes=2, cases=2, depth=3, size=32)
    rows = store.indices("test")  # one case: empty, fg, empty
    target = np.asarray(store.labels[rows])
    pred = np.zeros_like(target)
    pred[1] = np.roll(target[1], 1, axis=1)
    _, per_case, summary = score(store, rows, pred)
    t = target[1] == 1
    overlap = np.sum(t & np.roll(t, 1, axis=1))
    dice = 2 * overlap / (2 * t.sum())
    stats = summary["slice"]["classes"]["outer"]
    assert stats["dice"]["n"] == 1 and stats["dice"]["mean"] == pytest.approx(dice)
    assert stats["hd"]["mean"] == pytest.approx(1.0)  # a one-pixel shift of a disc
    assert per_case[0]["hd_outer"] == pytest.approx(store.cases[1]["spacing"][2])  # 1 px in x

    pred[1] = 0
    _, per_case, summary = score(store, rows, pred)
    stats = summary["slice"]["classes"]["outer"]
    assert stats["dice"]["mean"] == 0.0 and stats["hd"]["n_missed"] == 1
    # The miss counts at the image diagonal; nothing was detected.
    assert stats["hd"]["mean"] == pytest.approx(math.hypot(32, 32))
    assert math.isnan(stats["hd"]["mean_detected"])
    assert math.isinf(per_case[0]["hd95_outer"])  # a percentile keeps a miss a miss
    depth, (dz, dy, dx) = 3, store.cases[1]["spacing"]
    diagonal = math.sqrt((depth * dz) ** 2 + (32 * dy) ** 2 + (32 * dx) ** 2)
    volume = summary["volume"]["classes"]["outer"]
    assert volume["hd95"]["mean"] == pytest.approx(diagonal) and volume["hd95"]["n_missed"] == 1
    headers, table = summary_rows(summary)
    assert table[0][headers.index("missed")] == 1
    assert table[0][headers.index("HD")] == pytest.approx(math.hypot(32, 32))


def test_a_model_that_misses_structures_gets_the_worse_headline_hd(tmp_path):
    """Model A finds every structure with a 3 px error; B is exact where it finds one, but
    misses one slice in three. Leaving misses out would rank B first; the headline must not."""
    store = make_store(tmp_path, num_classes=2, cases=3, depth=6, size=32)
    rows = store.indices("test")
    target = np.asarray(store.labels[rows])
    model_a = np.roll(target, 3, axis=2)
    model_b = target.copy()
    fg = np.flatnonzero((target == 1).any(axis=(1, 2)))
    model_b[fg[::3]] = 0
    _, _, a = score(store, rows, model_a)
    _, _, b = score(store, rows, model_b)
    hd_a, hd_b = a["slice"]["classes"]["outer"]["hd"], b["slice"]["classes"]["outer"]["hd"]
    assert hd_b["mean_detected"] < hd_a["mean_detected"]  # the misleading number
    assert hd_b["mean"] > hd_a["mean"]  # the headline
    assert hd_b["n_missed"] == len(fg[::3]) and hd_a["n_missed"] == 0
    assert b["slice"]["mean"]["hd"] > a["slice"]["mean"]["hd"]


def test_volume_protocol_counts_misses_and_false_alarms_apart(tmp_path):
    store = make_store(tmp_path, num_classes=3, cases=3, depth=5, size=32)
    rows = store.indices("test")
    target = np.asarray(store.labels[rows])
    pred = target.copy()
    first = store.case(store.case_ids("test")[0])["num_slices"]
    pred[:first][pred[:first] == 2] = 1  # case 1: class 2 missed entirely
    _, per_case, summary = score(store, rows, pred)
    inner = summary["volume"]["classes"]["inner"]["hd"]
    assert inner["n_missed"] == 1 and inner["n_false_alarm"] == 0
    assert math.isinf(per_case[0]["hd_inner"])
    assert inner["mean"] == pytest.approx(np.mean([per_case[0]["diagonal_mm"], 0.0]))

    # Every class-2 voxel called class 1: class 2 missed in both cases; then class 2 predicted
    # in a case whose target has none of it: a false alarm, not a miss.
    _, _, summary = score(store, rows, np.where(target == 2, 1, target).astype(np.uint8))
    inner = summary["volume"]["classes"]["inner"]
    assert inner["hd"]["n_missed"] == 2 and inner["dice"]["mean"] == 0.0
    store.labels = np.where(np.asarray(store.labels) == 2, 1, np.asarray(store.labels))
    _, _, summary = score(store, rows, target)
    inner = summary["volume"]["classes"]["inner"]["hd"]
    assert inner["n_false_alarm"] == 2 and inner["n_missed"] == 0


def test_class_mean_never_drops_a_class_and_assumed_spacing_is_stated(tmp_path):
    store = make_store(tmp_path, num_classes=3, cases=3, depth=5, size=32)
    rows = store.indices("test")
    target = np.asarray(store.labels[rows])
    no_inner = np.where(target == 2, 1, target).astype(np.uint8)
    # A store where class 2 never occurs in the target: its class means have no value.
    _, _, summary = score(store, rows, np.asarray(target))
    assert math.isfinite(summary["slice"]["mean"]["hd"])
    store.labels = np.where(np.asarray(store.labels) == 2, 1, np.asarray(store.labels))
    _, _, summary = score(store, rows, no_inner)
    assert math.isnan(summary["slice"]["mean"]["dice"])
    assert summary["slice"]["classes_without_value"]["dice"] == ["inner"]
    store.meta["assumed_spacing"] = [10.0, 1.5625, 1.5625]
    _, _, summary = score(store, rows, no_inner)
    assert "(10 x 1.5625 x 1.5625) mm" in summary["notes"][0]


def test_score_rejects_partial_case(tmp_path):
    store = make_store(tmp_path)
    rows = store.indices("test")[1:]
    with pytest.raises(ValueError, match="all slices of case"):
        score(store, rows, np.asarray(store.labels[rows]))


def test_report_tables_and_files(tmp_path):
    headers, rows = ["m", "x", "n"], [["a", 0.12345, 3], ["b", float("inf"), None]]
    assert report.markdown_table(headers, rows).splitlines() == [
        "| m | x | n |",
        "|:--|--:|--:|",
        "| a | 0.1235 | 3 |",
        "| b | inf | - |",
    ]
    assert report.plain_table(headers, rows).splitlines()[2] == "a  0.1235  3"
    with pytest.raises(ValueError, match="row 0"):
        report.markdown_table(headers, [["a"]])
    report.write_csv(tmp_path / "t.csv", [{"a": np.float32(0.1), "b": float("nan")}], ["a", "b"])
    with open(tmp_path / "t.csv", newline="") as fh:
        row = next(csv.DictReader(fh))
    assert float(row["a"]) == float(np.float32(0.1)) and math.isnan(float(row["b"]))
    report.write_json(tmp_path / "t.json", {"x": np.float64(np.inf), "y": np.arange(2)})
    assert json.loads((tmp_path / "t.json").read_text()) == {"x": "inf", "y": [0, 1]}


def test_evaluate_run_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="split"):
        evaluate_run(tmp_path, split="train")
    with pytest.raises(ValueError, match="checkpoint"):
        evaluate_run(tmp_path, checkpoint="final")
    with pytest.raises(FileNotFoundError, match="checkpoint_best.pt"):
        evaluate_run(tmp_path)


def _checkpoint(path, root, num_classes):
    """A checkpoint of an untrained unet32 as training writes it (weights, config, classes)."""
    config = config_from_dict(
        {"experiment": "t", "data": {"root": str(root)}, "loss": {"name": "ce"}}
    )
    torch.manual_seed(0)
    model = create_model("unet32", in_channels=1, num_classes=num_classes)
    save_checkpoint(path, {"model": model.state_dict(), "config": config.to_dict(),
                           "num_classes": num_classes, "epoch": 3})  # fmt: skip
    return model


def test_evaluate_run_writes_files_of_the_checkpoints_predictions(tmp_path, capsys):
    store = make_store(tmp_path)
    run = tmp_path / "run"
    model = _checkpoint(run / "checkpoint_last.pt", store.root, store.num_classes)
    result = evaluate_run(run, split="test", checkpoint="last", device="cpu", batch_size=3)
    out = run / "eval_test_last"
    assert result["out_dir"] == str(out) and result["epoch"] == 3
    rows = store.indices("test")
    np.testing.assert_array_equal(np.load(out / "rows.npy"), rows)
    images = torch.from_numpy(np.asarray(store.images[rows]))[:, None]  # (N, 1, H, W)
    pred = np.load(out / "pred.npy")
    np.testing.assert_array_equal(pred, predict_labels(model, images, 8, "cpu").numpy())
    _, _, expected = score(store, rows, pred)
    saved = json.loads((out / "summary.json").read_text())
    assert saved["slice"]["mean"] == report.to_jsonable(expected["slice"]["mean"])
    assert saved["volume"]["classes"] == report.to_jsonable(expected["volume"]["classes"])
    with open(out / "per_slice.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == len(rows)
    with open(out / "per_case.csv", newline="") as fh:
        assert [r["case"] for r in csv.DictReader(fh)] == store.case_ids("test")
    table = (out / "summary.md").read_text()
    assert "| slice (px) | outer |" in table and "| volume (mm) | mean |" in table
    assert "volume (mm)  inner" in capsys.readouterr().out

    _checkpoint(run / "checkpoint_best.pt", tmp_path / "elsewhere", store.num_classes)
    with pytest.raises(FileNotFoundError, match="--data-root"):
        evaluate_run(run, device="cpu", quiet=True)
    result = evaluate_run(run, device="cpu", quiet=True, data_root=store.root)
    assert result["data_root"] == str(store.root)


def test_evaluate_run_empty_split_names_the_split_sizes(tmp_path):
    store = make_store(tmp_path)  # val is empty, as ACDC's shipped lists leave test
    run = tmp_path / "run"
    _checkpoint(run / "checkpoint_best.pt", store.root, store.num_classes)
    with pytest.raises(ValueError, match=r"'val' .* no slices \(cases per split: train 1, val 0"):
        evaluate_run(run, split="val", device="cpu", quiet=True)
