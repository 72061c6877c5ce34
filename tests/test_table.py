"""``ctxseg table``: Table 1 rows from evaluated runs, beside the paper's figures."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ctxseg.cli import main
from ctxseg.data.store import PreparedCase, write_store
from ctxseg.engine.checkpoint import save_checkpoint
from ctxseg.engine.config import config_from_dict
from ctxseg.evaluation import report
from ctxseg.evaluation.evaluate import evaluate_run
from ctxseg.evaluation.table import collect_rows, format_table, table_notes
from ctxseg.models import create_model


def _stats(mean: float, missed: int = 0) -> dict:
    return {"mean": mean, "mean_detected": mean, "n": 10, "n_missed": missed}


def _fake_run(
    root: Path, dataset: str, experiment: str, classes: dict[str, tuple], split: str = "test"
) -> Path:
    """A run folder with a config and a hand-written evaluation summary.

    ``classes``: name -> (slice Dice, slice HD, slice misses, volume Dice, volume HD95); the
    class means are written as ``evaluate`` writes them (NaN when a class has no value).
    """
    run = root / dataset / experiment
    config = config_from_dict(
        {"experiment": experiment, "data": {"root": f"data/prepared/{dataset}"},
         "loss": {"name": "ce"}}
    )  # fmt: skip
    (run / f"eval_{split}_best").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
    slice_classes = {
        name: {"dice": _stats(v[0]), "hd": _stats(v[1], v[2])} for name, v in classes.items()
    }
    volume_classes = {
        name: {"dice": _stats(v[3]), "hd95": _stats(v[4])} for name, v in classes.items()
    }

    def mean(i: int) -> float:
        return float(np.mean([v[i] for v in classes.values()]))  # inf/nan propagate

    summary = {
        "slice": {
            "classes": slice_classes,
            "mean": {"dice": mean(0), "hd": mean(1), "hd_detected": mean(1) - 0.5},
        },
        "volume": {"classes": volume_classes, "mean": {"dice": mean(3), "hd95": mean(4)}},
        "notes": ["mm values assume a voxel spacing"] if dataset == "acdc" else [],
    }
    if split == "val":
        summary["split_label"] = "validation split (used for model selection): not unbiased"
    report.write_json(run / f"eval_{split}_best" / "summary.json", summary)
    return run


def test_rows_follow_the_paper_order_and_carry_its_figures(tmp_path: Path) -> None:
    static = _fake_run(
        tmp_path, "promise12", "unet_context_static", {"prostate": (0.85, 7.0, 2, 0.8, 6.0)}
    )
    ce = _fake_run(tmp_path, "promise12", "unet_ce", {"prostate": (0.8, 9.0, 5, 0.75, 8.0)})
    acdc = _fake_run(
        tmp_path,
        "acdc",
        "unet_ce",
        {
            "RV": (0.7, 6.0, 1, 0.6, 9.0),
            "Myo": (0.8, 4.0, 0, 0.7, 5.0),
            "LV": (0.9, 2.0, 3, 0.8, 4.0),
        },
    )
    phantom = _fake_run(
        tmp_path, "phantom-prostate", "unet_ce", {"prostate": (0.5, 10.0, 0, 0.4, float("inf"))}
    )
    rows = collect_rows([static, phantom, ce, acdc])
    assert [(r["dataset"], r["experiment"]) for r in rows] == [
        ("acdc", "unet_ce"),
        ("phantom-prostate", "unet_ce"),
        ("promise12", "unet_ce"),
        ("promise12", "unet_context_static"),
    ]
    acdc_row = rows[0]
    assert acdc_row["slice_dice"] == pytest.approx(0.8) and acdc_row["slice_hd"] == pytest.approx(
        4.0
    )
    assert acdc_row["missed"] == 4 and acdc_row["slice_hd_detected"] == pytest.approx(3.5)
    assert acdc_row["volume_dice"] == pytest.approx(0.7)
    assert acdc_row["volume_hd95"] == pytest.approx(6.0)
    assert (acdc_row["paper_dice"], acdc_row["paper_hd"]) == (0.822, 5.69)
    assert rows[1]["paper_dice"] is None and math.isinf(rows[1]["volume_hd95"])
    assert (rows[3]["paper_dice"], rows[3]["paper_hd"]) == (0.861, 6.91)
    table = format_table(rows)
    static_cells = "0.8500 | 7.0000 | 6.5000 | 2 | 0.8000 | 6.0000 | 0.8610 | 6.9100 |"
    assert f"| promise12 | unet_context_static | {static_cells}" in table
    phantom_cells = "0.5000 | 10.0000 | 9.5000 | 0 | 0.4000 | inf | - | - |"
    assert f"| phantom-prostate | unet_ce | {phantom_cells}" in table
    notes = table_notes(rows)
    assert "test split" in notes and any("assume a voxel spacing" in n for n in notes)


def test_table_takes_the_class_mean_of_the_summary_and_labels_the_selection_split(
    tmp_path: Path,
) -> None:
    """A class without a value makes the class mean NaN in the summary: the table keeps it."""
    run = _fake_run(
        tmp_path,
        "acdc",
        "unet_ce",
        {"RV": (0.7, 6.0, 1, 0.6, float("nan")), "LV": (0.9, 2.0, 0, 0.8, 4.0)},
        split="val",
    )
    (row,) = collect_rows([run], split="val")
    assert math.isnan(row["volume_hd95"])  # not 4.0: the RV class has no value
    assert any("used for model selection" in n for n in table_notes([row]))


def test_missing_evaluation_names_the_command(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "x"
    run.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"run `ctxseg evaluate .*x --split val"):
        collect_rows([run], split="val")
    with pytest.raises(ValueError, match="no run folders"):
        collect_rows([])


def test_table_of_a_real_evaluation_through_the_cli(tmp_path: Path, capsys) -> None:
    """evaluate_run's own summary.json feeds the table: same numbers as the summary."""
    rng = np.random.default_rng(0)
    label = np.zeros((4, 32, 32), np.uint8)
    label[1:3, 10:20, 12:22] = 1
    cases = [
        PreparedCase(f"c{i}", f"p{i}", None, rng.random(label.shape, np.float32), label,
                     (2.0, 1.0, 1.0))
        for i in range(2)
    ]  # fmt: skip
    store = tmp_path / "promise12"
    write_store(store, cases, {"name": "t", "labels": {"0": "background", "1": "prostate"}},
                {"seed": 0, "train": ["c0"], "val": [], "test": ["c1"]})  # fmt: skip
    run = tmp_path / "runs" / "unet_ce"
    config = config_from_dict(
        {"experiment": "unet_ce", "data": {"root": str(store)}, "loss": {"name": "ce"}}
    )
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
    torch.manual_seed(0)
    model = create_model("unet32", in_channels=1, num_classes=2)
    save_checkpoint(run / "checkpoint_best.pt", {"model": model.state_dict(), "epoch": 1,
                    "config": config.to_dict(), "num_classes": 2})  # fmt: skip
    result = evaluate_run(run, device="cpu", quiet=True)
    out = tmp_path / "table.md"
    assert main(["table", str(run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "promise12" in printed and "unet_ce" in printed and "0.7964" in printed
    row = collect_rows([run])[0]
    volume = result["volume"]["classes"]["prostate"]
    assert row["slice_dice"] == pytest.approx(result["slice"]["mean"]["dice"], nan_ok=True)
    assert row["slice_hd"] == pytest.approx(result["slice"]["mean"]["hd"], nan_ok=True)
    assert row["missed"] == result["slice"]["classes"]["prostate"]["hd"]["n_missed"]
    assert row["slice_hd_detected"] == pytest.approx(
        result["slice"]["mean"]["hd_detected"], nan_ok=True
    )
    assert row["volume_dice"] == pytest.approx(volume["dice"]["mean"], nan_ok=True)
    assert row["volume_hd95"] == pytest.approx(volume["hd95"]["mean"], nan_ok=True)
    assert out.read_text().startswith("| data set | experiment | slice Dice |")
