"""Aggregation of an evaluated grid: seed spread, paired tests, strata (``results.csv`` / ``.md``).

Inputs are the files ``ctxseg evaluate`` writes in each run folder (``summary.json``,
``per_slice.csv``, ``per_case.csv``); nothing is recomputed from predictions here, so the
numbers are those of the runs' own reports.

- **Table**: per method, for each protocol and class, the mean and standard deviation over the
  seeds of the run's summary numbers (slice Dice, slice HD with misses at the image diagonal,
  HD over detected structures, misses; volume Dice, HD95 with misses at the volume diagonal).
- **Paired tests** against the reference method (U-Net CE): per test case, the slice-protocol
  Dice and HD of the case's slices (a case's mean over its slices with the structure; misses
  at the image diagonal), averaged over seeds, then the Wilcoxon signed-rank test over the
  cases (:func:`ctxseg.evaluation.statistics.paired_wilcoxon`).
- **Strata**: the same slice-protocol Dice and HD by object-size third and, for the cardiac
  sets, by apical / mid / basal position (:mod:`ctxseg.evaluation.strata`), mean over seeds.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ctxseg.evaluation.statistics import paired_wilcoxon, seed_spread
from ctxseg.evaluation.strata import POSITIONS, SIZE_STRATA, cardiac_positions, size_strata

__all__ = ["RunResult", "aggregate", "load_run"]


@dataclass
class RunResult:
    """The evaluation files of one run."""

    method: str
    seed: int
    run_dir: Path
    summary: dict[str, Any]
    per_slice: list[dict[str, Any]]
    per_case: list[dict[str, Any]]

    @property
    def classes(self) -> list[str]:
        return list(self.summary["classes"])


def _number(text: Any) -> Any:
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


def _read_csv(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def load_run(
    method: str, seed: int, run_dir: str | Path, eval_dir: str = "eval_test_best"
) -> RunResult:
    """Read a run's evaluation files.

    Raises:
        FileNotFoundError: the run has not been evaluated (names the file).
        ValueError: an unreadable summary (names the file).
    """
    folder = Path(run_dir) / eval_dir
    path = folder / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the run has not been evaluated")
    try:
        summary = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    return RunResult(
        method,
        seed,
        Path(run_dir),
        summary,
        _read_csv(folder / "per_slice.csv"),
        _read_csv(folder / "per_case.csv"),
    )


def _value(x: Any) -> float:
    """A summary number (``summary.json`` spells NaN / inf as strings) as a float."""
    if x is None:
        return math.nan
    return float(x)


# (column key, protocol, metric, statistic) of the table, per class and for the class mean.
TABLE_COLUMNS = (
    ("slice_dice", "slice", "dice", "mean"),
    ("slice_hd", "slice", "hd", "mean"),
    ("slice_hd_detected", "slice", "hd", "mean_detected"),
    ("slice_missed", "slice", "hd", "n_missed"),
    ("volume_dice", "volume", "dice", "mean"),
    ("volume_hd95", "volume", "hd95", "mean"),
    ("volume_missed", "volume", "hd", "n_missed"),
)


def run_numbers(run: RunResult) -> dict[str, dict[str, float]]:
    """The table numbers of one run: ``{class or "mean": {column key: value}}``."""
    out: dict[str, dict[str, float]] = {}
    for name in run.classes:
        out[name] = {
            key: _value(run.summary[protocol]["classes"][name][metric][stat])
            for key, protocol, metric, stat in TABLE_COLUMNS
        }
    mean: dict[str, float] = {}
    for key, protocol, metric, stat in TABLE_COLUMNS:
        if stat == "n_missed":
            mean[key] = sum(out[name][key] for name in run.classes)
        else:
            name = f"{metric}_detected" if stat == "mean_detected" else metric
            mean[key] = _value(run.summary[protocol]["mean"].get(name))
    out["mean"] = mean
    return out


def _penalised(row: Mapping[str, Any], name: str, penalty: float) -> float:
    hd = float(row[f"hd_{name}"])
    return penalty if math.isinf(hd) else hd


def case_scores(run: RunResult) -> dict[str, dict[str, dict[str, float]]]:
    """Per test case, the slice-protocol Dice and HD of each class and their class mean.

    A case's value is the mean over its slices where the class is in the target (misses: Dice
    0, HD at the image diagonal). The class mean of a case is NaN when the case lacks a class.

    Returns:
        ``{case: {class or "mean": {"dice", "hd"}}}``.
    """
    penalty = float(run.summary["slice"]["penalty"])
    values: dict[str, dict[str, dict[str, list[float]]]] = {}
    for row in run.per_slice:
        case = values.setdefault(str(row["case"]), {})
        for name in run.classes:
            if float(row[f"target_px_{name}"]) > 0:
                entry = case.setdefault(name, {"dice": [], "hd": []})
                entry["dice"].append(float(row[f"dice_{name}"]))
                entry["hd"].append(_penalised(row, name, penalty))
    out: dict[str, dict[str, dict[str, float]]] = {}
    for case, classes in values.items():
        scores = {n: {k: float(np.mean(v)) for k, v in m.items()} for n, m in classes.items()}
        complete = all(n in scores for n in run.classes)
        scores["mean"] = {
            k: float(np.mean([scores[n][k] for n in run.classes])) if complete else math.nan
            for k in ("dice", "hd")
        }
        out[case] = scores
    return out


def strata_scores(
    run: RunResult, strata: Mapping[str, np.ndarray]
) -> dict[str, dict[str, dict[str, float]]]:
    """Slice-protocol Dice / HD of one run by stratum: ``{class: {stratum: {dice, hd, n}}}``.

    Args:
        run: the evaluated run.
        strata: class name -> per-slice stratum labels (``""`` for slices not in any).
    """
    penalty = float(run.summary["slice"]["penalty"])
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, labels in strata.items():
        out[name] = {}
        for stratum in sorted({s for s in labels if s}):
            rows = [r for r, s in zip(run.per_slice, labels, strict=True) if s == stratum]
            rows = [r for r in rows if float(r[f"target_px_{name}"]) > 0]
            dice = [float(r[f"dice_{name}"]) for r in rows]
            hd = [_penalised(r, name, penalty) for r in rows]
            missed = sum(1 for r in rows if float(r[f"pred_px_{name}"]) == 0)
            out[name][stratum] = {
                "dice": float(np.mean(dice)) if dice else math.nan,
                "hd": float(np.mean(hd)) if hd else math.nan,
                "missed": float(missed),
                "n": float(len(rows)),
            }
    return out


def make_strata(run: RunResult, cardiac: bool) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """The size strata of every class (and the cardiac positions), from a run's test slices.

    Returns:
        ``({"size": {class: labels}, "position": {class: labels}}, edges)``; ``position`` only
        for cardiac sets; ``edges`` the size thresholds in pixels per class.
    """
    sizes, edges = {}, {}
    for name in run.classes:
        area = np.array([float(r[f"target_px_{name}"]) for r in run.per_slice])
        sizes[name], edges[name] = size_strata(area)
    kinds = {"size": sizes}
    if cardiac:
        keys = [f"target_px_{n}" for n in run.classes]
        lv = "target_px_LV" if "LV" in run.classes else None
        positions = cardiac_positions(run.per_slice, keys, lv)
        kinds["position"] = {name: positions for name in run.classes}
    return kinds, edges


def aggregate(
    runs: Sequence[RunResult], reference: str = "unet_ce", cardiac: bool = False
) -> dict[str, Any]:
    """Everything ``results.md`` / ``results.csv`` show, from the evaluated runs of a grid.

    Args:
        runs: every evaluated run (methods x seeds) on the same test split.
        reference: the method the others are tested against (paired over test cases).
        cardiac: also stratify by apical / mid / basal position.

    Returns:
        ``{"methods": [...], "classes": [...], "seeds": {method: [seeds]},
        "table": {method: {class: {column: {"mean", "std", "n", "n_nan", "values"}}}},
        "tests": {method: {class: {"dice": test, "hd": test}}}, "strata": {kind: {method:
        {class: {stratum: {"dice", "hd", "missed", "n"}}}}}, "edges": {class: [e1, e2]},
        "cases": {method: {case: {class: {"dice", "hd"}}}}}``.

    Raises:
        ValueError: no runs, or runs scored on different test slices.
    """
    if not runs:
        raise ValueError("no evaluated runs to aggregate")
    rows0 = [r["row"] for r in runs[0].per_slice]
    for run in runs[1:]:
        if [r["row"] for r in run.per_slice] != rows0:
            raise ValueError(
                f"{run.run_dir} was evaluated on other slices than {runs[0].run_dir}: "
                "a comparison needs one test split"
            )
    methods = list(dict.fromkeys(r.method for r in runs))
    classes = runs[0].classes
    by_method = {m: [r for r in runs if r.method == m] for m in methods}
    names = [*classes, "mean"] if len(classes) > 1 else classes

    table: dict[str, Any] = {}
    for method, group in by_method.items():
        numbers = [run_numbers(r) for r in group]
        table[method] = {
            name: {
                key: {
                    **seed_spread([n[name][key] for n in numbers]),
                    "values": [n[name][key] for n in numbers],
                }
                for key, *_ in TABLE_COLUMNS
            }
            for name in names
        }

    cases: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for method, group in by_method.items():
        per_seed = [case_scores(r) for r in group]
        cases[method] = {
            case: {
                name: {
                    k: float(np.nanmean([s[case][name][k] for s in per_seed]))
                    if any(np.isfinite(s[case][name][k]) for s in per_seed)
                    else math.nan
                    for k in ("dice", "hd")
                }
                for name in names
                if name in per_seed[0][case]
            }
            for case in per_seed[0]
        }

    tests: dict[str, Any] = {}
    if reference in cases:
        ref = cases[reference]
        order = sorted(ref)
        for method in methods:
            if method == reference:
                continue
            tests[method] = {}
            for name in names:
                tests[method][name] = {
                    k: paired_wilcoxon(
                        [cases[method][c].get(name, {}).get(k, math.nan) for c in order],
                        [ref[c].get(name, {}).get(k, math.nan) for c in order],
                    )
                    for k in ("dice", "hd")
                }

    kinds, edges = make_strata(runs[0], cardiac)
    strata: dict[str, Any] = {}
    for kind, labels in kinds.items():
        strata[kind] = {}
        for method, group in by_method.items():
            per_seed = [strata_scores(r, labels) for r in group]
            strata[kind][method] = {
                name: {
                    stratum: {
                        k: float(np.mean([s[name][stratum][k] for s in per_seed]))
                        for k in ("dice", "hd", "missed", "n")
                    }
                    for stratum in per_seed[0][name]
                }
                for name in per_seed[0]
            }
    return {
        "methods": methods,
        "classes": names,
        "seeds": {m: [r.seed for r in g] for m, g in by_method.items()},
        "reference": reference,
        "table": table,
        "tests": tests,
        "strata": strata,
        "strata_order": {"size": list(SIZE_STRATA), "position": list(POSITIONS)},
        "edges": {k: list(v) for k, v in edges.items()},
        "cases": cases,
    }
