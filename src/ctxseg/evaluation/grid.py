"""A grid of training runs (methods x seeds), each an ordinary run folder, resumable.

Every run of the grid is ``<out>/runs/<method>/seed<k>/``, trained from the shipped config
``configs/<dataset>/<method>.yaml`` with ``--set`` overrides (the data, the seed, the epochs,
the user's own), then evaluated on the test split with its best checkpoint
(``eval_test_best/``). Starting the grid again skips what is finished, resumes what was
interrupted (from ``checkpoint_last.pt``, bit-exact on the same machine) and re-evaluates a
run whose evaluation is missing or older than its checkpoint. A run that fails is recorded
with its error and the others go on; the report lists it.

With ``parallel > 1`` the runs go to that many worker processes (spawned, each with its share
of the CPU threads): for a GPU with memory and compute to spare, where one U-Net run does not
fill it.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ctxseg.engine.config import BUILTIN_CONFIGS, Config, load_config

__all__ = [
    "GridRun",
    "check_methods",
    "estimate_epoch_seconds",
    "execute",
    "plan_grid",
    "run_state",
]

log = logging.getLogger(__name__)

EVAL_DIR = "eval_test_best"


@dataclass(frozen=True)
class GridRun:
    """One training run of the grid.

    Attributes:
        method: the experiment config's name (``unet_ce``).
        seed: the training seed.
        config: the config file.
        run_dir: the run folder.
        overrides: ``key=value`` overrides applied to the config.
    """

    method: str
    seed: int
    config: Path
    run_dir: Path
    overrides: tuple[str, ...] = field(default=())

    def load(self) -> Config:
        """The run's validated config."""
        return load_config(self.config, list(self.overrides))


def check_methods(methods: Sequence[str], known: Sequence[str], where: str) -> None:
    """Raise ``ValueError`` naming the methods not among ``known`` (and listing those).

    Args:
        methods: the methods asked for.
        known: the methods available.
        where: what they are available for (a config folder, a preset), for the message.
    """
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown} for {where}; available: {list(known)}")


def plan_grid(
    dataset: str,
    data_root: str | Path,
    out: str | Path,
    methods: Sequence[str],
    seeds: Sequence[int],
    epochs: int | None = None,
    overrides: Sequence[str] = (),
    configs_dir: str | Path | None = None,
    method_overrides: Callable[[Config], list[str]] | None = None,
) -> list[GridRun]:
    """The runs of a grid, method by method, seed by seed; every config validated up front.

    Args:
        dataset: the shipped config folder (``promise12``, ``acdc``, ``phantom-prostate`` ...).
        data_root: the prepared store to train and test on.
        out: the grid folder (runs go to ``out/runs/<method>/seed<k>``).
        methods: experiment config names.
        seeds: training seeds.
        epochs: override of ``train.epochs`` (None: the configs' own).
        overrides: more ``key=value`` overrides for every run (applied last).
        configs_dir: folder of the configs (default the shipped ``configs/<dataset>``).
        method_overrides: overrides that depend on the method's config (a preset's scaled ROI
            sizes), applied after the grid's own and before ``overrides``.

    Raises:
        ValueError: an unknown method (the message lists the available ones), a bad override,
            no method or no seed, a seed repeated.
        FileNotFoundError: a missing config file.
    """
    folder = Path(configs_dir) if configs_dir is not None else BUILTIN_CONFIGS / dataset
    if not methods or not seeds:
        raise ValueError("the grid needs at least one method and one seed")
    if len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise ValueError(f"seeds must be distinct non-negative integers, got {list(seeds)}")
    check_methods(methods, sorted(p.stem for p in folder.glob("*.yaml")), str(folder))
    runs = []
    for method in methods:
        own = [f"data.root={Path(data_root).resolve()}"]
        if epochs is not None:
            own.append(f"train.epochs={epochs}")
        if method_overrides is not None:
            own += method_overrides(load_config(folder / f"{method}.yaml", own))
        for seed in seeds:
            sets = [*own, f"seed={seed}"]
            run = GridRun(
                method,
                int(seed),
                folder / f"{method}.yaml",
                Path(out) / "runs" / method / f"seed{seed}",
                (*sets, *overrides),
            )
            run.load()  # a bad override fails here, before anything trains
            runs.append(run)
    return runs


def _checkpoint_epoch(path: Path) -> int | None:
    from ctxseg.engine.checkpoint import load_checkpoint

    if not path.is_file():
        return None
    try:
        return int(load_checkpoint(path)["epoch"])
    except (ValueError, KeyError, TypeError):
        return None


def run_state(run: GridRun) -> str:
    """Where a run stands: ``"done"``, ``"evaluate"``, ``"resume"`` or ``"train"``.

    - ``done``: trained for its epochs and evaluated after its best checkpoint was written;
    - ``evaluate``: trained, the evaluation missing or older than the checkpoint;
    - ``resume``: a last checkpoint of fewer epochs;
    - ``train``: nothing to continue from (a new run; a folder without a readable checkpoint
      is replaced).
    """
    epochs = run.load().train.epochs
    done = _checkpoint_epoch(run.run_dir / "checkpoint_last.pt")
    if done is None:
        return "train"
    if done < epochs:
        return "resume"
    summary = run.run_dir / EVAL_DIR / "summary.json"
    best = run.run_dir / "checkpoint_best.pt"
    if summary.is_file() and best.is_file() and summary.stat().st_mtime >= best.stat().st_mtime:
        return "done"
    return "evaluate"


def train_and_evaluate(run: GridRun, device: str = "auto", quiet: bool = True) -> dict[str, Any]:
    """Bring one run to ``done``: train or resume as needed, then evaluate on the test split.

    Returns:
        ``{"method", "seed", "run_dir", "state" (before), "seconds", "error"}``; ``error`` is
        None on success, else the one-line reason (the run is left as it was).
    """
    from ctxseg.engine.factory import create_trainer
    from ctxseg.evaluation.evaluate import evaluate_run

    start = time.perf_counter()
    state = run_state(run)
    result = {
        "method": run.method,
        "seed": run.seed,
        "run_dir": str(run.run_dir),
        "state": state,
        "error": None,
    }
    try:
        if state in ("train", "resume"):
            trainer = create_trainer(
                run.load(),
                run.run_dir,
                device=device,
                quiet=quiet,
                resume=state == "resume",
                overwrite=state == "train",
            )
            trainer.fit()
        if state != "done":
            evaluate_run(run.run_dir, "test", "best", device=device, quiet=True)
    except (ValueError, OSError, RuntimeError) as err:
        result["error"] = f"{type(err).__name__}: {err}"
        log.error("%s seed %d failed: %s", run.method, run.seed, result["error"])
    result["seconds"] = time.perf_counter() - start
    return result


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def execute(
    runs: Sequence[GridRun],
    device: str = "auto",
    parallel: int = 1,
    quiet: bool = True,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Bring every run to ``done`` (:func:`train_and_evaluate`), ``parallel`` at a time.

    Args:
        runs: the grid.
        device: ``auto`` / ``cpu`` / ``cuda``.
        parallel: runs at once; above 1 each runs in its own spawned process with
            ``cpu_count // parallel`` CPU threads.
        quiet: no progress bars.
        on_result: called with each run's result as it finishes.

    Returns:
        The results in the order of ``runs``.
    """
    if parallel < 1:
        raise ValueError(f"parallel must be >= 1, got {parallel}")
    results: dict[int, dict[str, Any]] = {}
    if parallel == 1:
        for i, run in enumerate(runs):
            results[i] = train_and_evaluate(run, device, quiet)
            if on_result:
                on_result(results[i])
    else:
        import multiprocessing

        threads = max(1, (os.cpu_count() or 1) // parallel)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            parallel, mp_context=context, initializer=_init_worker, initargs=(threads,)
        ) as pool:
            futures = {
                pool.submit(train_and_evaluate, run, device, True): i for i, run in enumerate(runs)
            }
            for future in as_completed(futures):
                i = futures[future]
                try:
                    results[i] = future.result()
                except Exception as err:  # a worker that died: record it, keep the others
                    run = runs[i]
                    results[i] = {
                        "method": run.method,
                        "seed": run.seed,
                        "run_dir": str(run.run_dir),
                        "state": "?",
                        "seconds": math.nan,
                        "error": f"{type(err).__name__}: {err}",
                    }
                if on_result:
                    on_result(results[i])
    return [results[i] for i in range(len(runs))]


def estimate_epoch_seconds(run: GridRun, device: str = "auto", steps: int = 2) -> float:
    """Seconds of one training epoch of a run, from timed steps on its own data.

    Builds the run's trainer in a temporary folder, times ``steps`` training steps after a
    warm-up step on batches of its training slices, and adds the validation pass (timed on
    up to 64 validation slices and scaled). An estimate: the first epochs of a real run also
    pay start-up costs, and a shared machine's load changes it.
    """
    from ctxseg.engine.factory import create_trainer

    with tempfile.TemporaryDirectory(prefix="ctxseg-estimate-") as tmp:
        trainer = create_trainer(run.load(), Path(tmp) / "run", device=device, quiet=True)
        batch = trainer.config.train.batch_size
        n = trainer.train_images.shape[0]
        index = torch.arange(min(batch, n)) % n
        image = trainer.train_images[index].to(trainer.device)
        target = trainer.train_labels[index].to(trainer.device).long()
        if trainer.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        trainer.on_epoch_start(0)
        trainer.train_step(image, target)  # warm-up
        _sync(trainer.device)
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(image, target)
        _sync(trainer.device)
        step = (time.perf_counter() - start) / steps
        val_n = trainer.val_images.shape[0]
        val_s = 0.0
        if val_n:
            take = min(val_n, 64)
            trainer.val_images = trainer.val_images[:take]
            trainer.val_labels = trainer.val_labels[:take]
            start = time.perf_counter()
            trainer._validate()
            val_s = (time.perf_counter() - start) * val_n / take
        return math.ceil(n / batch) * step + val_s / trainer.config.train.val_every


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
