"""``ctxseg reproduce``: the paper's Table 1 in one command, with honest statistics.

Trains every method of Table 1 (SPEC §2, plus the supplement's row) for each seed on a
prepared data set (:mod:`ctxseg.evaluation.grid`: each run an ordinary, resumable run folder),
evaluates each on the test split and writes, in the output folder:

- ``results.md``: the budget and the machine; per method the mean and standard deviation
  over seeds of the slice and volume protocols (per class for a multi-class set), the miss
  counts, the paper's figures, and the paired Wilcoxon test against U-Net CE over the test
  cases (p-value and median paired difference); Dice and HD by object-size third (and by
  apical / mid / basal position on the cardiac sets); the list of failed runs;
- ``results.csv``: every number of ``results.md`` and of each run, in long form;
- ``boxplots.png`` and ``overlays.png`` (Fig. 3 / Fig. 4 style, small structures);
- ``grid.json``: each run's state, time and error.

``--quick`` runs a small grid on the prostate phantom (64 x 64 slices at 2 mm) that fits a
2-core CPU in minutes; it shows the machinery, not the paper's result.
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctxseg import __version__
from ctxseg.data.store import PreparedStore
from ctxseg.engine.cli import add_override_argument
from ctxseg.evaluation import report
from ctxseg.evaluation.grid import (
    check_methods,
    estimate_epoch_seconds,
    execute,
    plan_grid,
    run_state,
)
from ctxseg.evaluation.methods import TABLE1, available_methods
from ctxseg.evaluation.writeup import write_results

__all__ = ["QUICK", "GridPreset", "register_cli", "reproduce"]

log = logging.getLogger(__name__)

DEFAULT_SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class GridPreset:
    """A small grid on a phantom prepared at a reduced size (``--quick``, the demo).

    Attributes:
        methods: experiment configs of ``configs/phantom-prostate``.
        seeds: training seeds.
        cases: phantom cases.
        size: prepared slice side in pixels (a multiple of 32).
        spacing: prepared voxel size in mm (ROI sizes in pixels are scaled with it).
        epochs: training epochs.
        lr: Adam learning rate (a short run needs a larger step than the paper's 1e-4).
    """

    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    cases: int = 10
    size: int = 64
    spacing: float = 2.0
    epochs: int = 12
    lr: float = 1e-3

    def __post_init__(self) -> None:
        if not self.methods or not self.seeds:
            raise ValueError("a preset needs at least one method and one seed")
        if self.cases < 3:
            raise ValueError(f"cases must be >= 3 (train, val and test), got {self.cases}")
        if self.size < 32 or self.size % 32:
            raise ValueError(f"size must be a positive multiple of 32, got {self.size}")
        if not (self.spacing > 0 and self.lr > 0 and self.epochs >= 1):
            raise ValueError(f"spacing and lr must be > 0 and epochs >= 1: {self}")

    def overrides(self) -> list[str]:
        return [f"optim.lr={self.lr}", "train.batch_size=16"]

    def describe(self) -> str:
        return (
            f"prostate phantom, {self.cases} cases, {self.size}x{self.size} slices at "
            f"{self.spacing:g} mm (ROI sizes scaled), Adam {self.lr:g}, batch 16"
        )


QUICK = GridPreset(
    methods=(
        "unet_ce",
        "unet_context_static",
        "unet_context_dynamic",
        "gan",
        "seg_glgan_static",
        "seg_glgan_dynamic",
    ),
    seeds=(0, 1),
)


def prepare_preset_data(out: Path, preset: GridPreset, seed: int = 0) -> PreparedStore:
    """Prostate phantoms in PROMISE12's layout, prepared at the preset's size and spacing."""
    import tempfile

    from ctxseg.data.phantoms import write_prostate_phantoms
    from ctxseg.data.promise12 import prepare_promise12

    if (out / "dataset.json").is_file():
        store = PreparedStore.open(out)
        if store.image_size == (preset.size, preset.size):
            return store
    with tempfile.TemporaryDirectory(prefix="ctxseg-grid-") as tmp:
        write_prostate_phantoms(Path(tmp) / "raw", preset.cases, seed)
        return prepare_promise12(
            Path(tmp) / "raw",
            out,
            seed=seed,
            overwrite=True,
            size=preset.size,
            spacing=preset.spacing,
            name="phantom-prostate",
        )


def scaled_roi_overrides(runs_config: Any, spacing: float) -> list[str]:
    """ROI sizes of a config (pixels at 1 mm) in pixels of ``spacing`` mm, as overrides.

    The static discriminator's ROI stays at least 40 px, the smallest its pooled branch takes.
    """
    from ctxseg.models.discriminator import MIN_POOLED_SIZE

    out = []
    for key in ("roi_size", "margin", "min_size"):
        value = getattr(runs_config.loss, key)
        if value:
            out.append(f"loss.{key}={max(1, round(value / spacing))}")
    adv = runs_config.adversarial
    if adv is not None and adv.discriminator == "context":
        if adv.roi == "static":
            out.append(
                f"adversarial.roi_size={max(MIN_POOLED_SIZE, round(adv.roi_size / spacing))}"
            )
        else:
            out.append(f"adversarial.margin={round(adv.margin / spacing)}")
    return out


def _hardware(device: str) -> str:
    import torch

    from ctxseg.engine.distributed import resolve_device
    from ctxseg.engine.precision import resolve_fast_path

    dev = resolve_device(device)
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
    else:
        from ctxseg.engine.precision import cpu_bf16_flags

        name = f"{_cpu_name()}, {torch.get_num_threads()} threads"
        name += f" ({', '.join(cpu_bf16_flags()) or 'no native bf16'})"
    fast = resolve_fast_path(dev)
    return f"{name}; torch {torch.__version__}; fast path: {fast.reason}"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def reproduce(
    data: str | Path | None,
    out: str | Path,
    dataset: str | None = None,
    methods: list[str] | None = None,
    seeds: list[int] | None = None,
    epochs: int | None = None,
    overrides: list[str] | None = None,
    parallel: int = 1,
    device: str = "auto",
    dry_run: bool = False,
    preset: GridPreset | None = None,
    quiet: bool = True,
) -> dict[str, Any]:
    """Train, evaluate and compare every method of Table 1 on a prepared data set.

    Args:
        data: the prepared store (``ctxseg prepare ...``); with a ``preset`` and None, the
            preset's phantom is prepared in ``out/data``.
        out: the grid folder.
        dataset: the shipped config folder; default the store's ``dataset.json`` name.
        methods: config names; default Table 1's rows that the data set has configs for.
        seeds: training seeds; default 0 1 2 (the preset's with a ``preset``).
        epochs: override of ``train.epochs``.
        overrides: ``key=value`` for every run.
        parallel: runs at once.
        device: ``auto`` / ``cpu`` / ``cuda``.
        dry_run: list the runs, their state and the estimated time; train nothing.
        preset: a small phantom grid (:data:`QUICK`, the demo's), its methods, seeds, epochs
            and sizes the defaults.
        quiet: no progress bars.

    Returns:
        ``{"runs": [...], "estimate_s": float}`` for a dry run, else the aggregate with
        ``"seconds"`` and ``"results"`` (the path of ``results.md``).
    """
    start = time.perf_counter()
    out = Path(out)
    if data is None:
        if preset is None:
            raise ValueError("--data is required (a prepared store), except with --quick")
        # refused before minutes of phantom preparation, not after
        known = available_methods(dataset or "phantom-prostate")
        check_methods(methods or [], known, "the quick grid")
        store = prepare_preset_data(out / "data" / "phantom-prostate", preset)
    else:
        store = PreparedStore.open(data)
    dataset = dataset or ("phantom-prostate" if preset else store.meta.get("name"))
    names = available_methods(dataset)
    if methods is None:
        methods = list(preset.methods) if preset else [m.name for m in TABLE1 if m.name in names]
    seeds = list(seeds if seeds is not None else (preset.seeds if preset else DEFAULT_SEEDS))
    epochs = epochs if epochs is not None else (preset.epochs if preset else None)
    sets = list(overrides or [])
    scaled = None
    if preset:

        def scaled(config: Any) -> list[str]:
            return preset.overrides() + scaled_roi_overrides(config, preset.spacing)

    runs = plan_grid(
        dataset, store.root, out, methods, seeds, epochs, sets, method_overrides=scaled
    )
    states = [run_state(r) for r in runs]

    if dry_run:
        per_method: dict[str, float] = {}
        total = 0.0
        lines = []
        for run, state in zip(runs, states, strict=True):
            if run.method not in per_method and state != "done":
                per_method[run.method] = estimate_epoch_seconds(run, device)
            config = run.load()
            left = 0 if state in ("done", "evaluate") else config.train.epochs
            seconds = left * per_method.get(run.method, 0.0)
            total += seconds
            lines.append(
                f"{run.method:<28} seed {run.seed}  {state:<8}  "
                f"{config.train.epochs} epochs  ~{seconds / 60:.1f} min  {run.run_dir}"
            )
        print("\n".join(lines))
        print(
            f"{len(runs)} runs ({states.count('done')} done); estimated training time "
            f"{total / 60:.1f} min in sequence, ~{total / 60 / parallel:.1f} min with "
            f"--parallel {parallel} if the device keeps up (from timed steps on {device}; "
            "a resumed run counts as whole)"
        )
        return {
            "runs": [str(r.run_dir) for r in runs],
            "states": states,
            "estimate_s": total,
            "epoch_seconds": per_method,
        }

    log.info(
        "%d runs: %d to train, %d to resume, %d to evaluate, %d done",
        len(runs),
        states.count("train"),
        states.count("resume"),
        states.count("evaluate"),
        states.count("done"),
    )

    def progress(result: dict[str, Any]) -> None:
        status = "failed: " + result["error"] if result["error"] else "ok"
        log.info(
            "%s seed %d (%s) %.0f s: %s",
            result["method"],
            result["seed"],
            result["state"],
            result["seconds"],
            status,
        )

    outcomes = execute(runs, device, parallel, quiet, on_result=progress)
    seconds = time.perf_counter() - start
    report.write_json(out / "grid.json", {"outcomes": outcomes, "seconds": seconds})
    budget = sorted({r.load().train.epochs for r in runs})
    train_s = [o["seconds"] for o in outcomes if o["state"] in ("train", "resume")]
    header = [
        f"ctxseg {__version__}, {time.strftime('%Y-%m-%d')}; hardware: {_hardware(device)}",
        f"budget: {', '.join(map(str, budget))} epochs, seeds {seeds}, batch "
        f"{runs[0].load().train.batch_size}, {len(methods)} methods; "
        f"{'quick preset: ' + preset.describe() + '; ' if preset else ''}"
        f"overrides {sets or 'none'}; --parallel {parallel}",
        f"wall time of this invocation {seconds / 60:.1f} min"
        + (f" (median training run {statistics.median(train_s) / 60:.1f} min)" if train_s else ""),
    ]
    agg = write_results(out, runs, outcomes, dataset, store, header)
    return {**agg, "seconds": seconds, "results": str(out / "results.md")}


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ctxseg reproduce``."""
    parser = subparsers.add_parser(
        "reproduce",
        help="train, evaluate and compare every Table 1 method over seeds (results.md)",
        description=(
            "Train every method of the paper's Table 1 (and the supplement's row) for each "
            "seed on a prepared data set, evaluate each on the test split, and write "
            "results.md / results.csv (mean and spread over seeds, paired Wilcoxon tests "
            "against U-Net CE over the test cases, Dice and HD by object size) with box "
            "plots and overlays. Each run is an ordinary run folder: starting again skips "
            "finished runs and resumes interrupted ones."
        ),
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="prepared store (required unless --quick, which prepares its own phantom; no default)",
    )
    parser.add_argument(
        "--dataset",
        default=None,
        help="config set: promise12 | acdc | phantom-prostate | phantom-cardiac "
        "(default: the store's name)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=None,
        metavar="NAME",
        help="experiment configs (default: every Table 1 row of the data set)",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=None,
        metavar="SEED",
        help="training seeds (default: 0 1 2)",
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs of every run (default: the configs', 150)"
    )
    add_override_argument(parser, "applied to every run of the grid")
    parser.add_argument(
        "--parallel", type=int, default=1, help="runs at once, each in its own process (default: 1)"
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    parser.add_argument(
        "--dry-run", action="store_true", help="list the runs and the estimated time; train nothing"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a small phantom grid for a 2-core CPU (minutes)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="grid folder (default: outputs/reproduce-<dataset>)"
    )
    parser.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
    name = args.dataset or ("quick" if args.quick else (args.data.name if args.data else "grid"))
    out = args.out or Path("outputs") / f"reproduce-{name}"
    result = reproduce(
        args.data,
        out,
        args.dataset,
        args.methods,
        args.seeds,
        args.epochs,
        args.overrides,
        args.parallel,
        args.device,
        args.dry_run,
        QUICK if args.quick else None,
    )
    if not args.dry_run:
        print((Path(result["results"])).read_text())
        print(f"written to {out}")
    return 0
