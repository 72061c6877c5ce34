"""The training loop of the U-Net runs (SPEC §7), with the hooks the GAN trainer overrides.

Design:

- The training and validation slices are held in memory as tensors (on the GPU when they fit)
  and batches are gathered from them by index: no DataLoader, no worker processes.
- An epoch is a function of ``(seed, epoch)``: its shuffle (and augmentation, when on) comes
  from a generator seeded with both, the global torch generator is reseeded with them, and the
  learning rate is a function of the epoch. With the model and optimiser restored from the
  checkpoint of the previous epoch, a resumed run repeats an uninterrupted one exactly.
- The training step never synchronises with the host: it returns detached scalars, which the
  loop sums on the device and reads once per epoch (and, for the progress bar, at most once a
  second). A non-finite value stops the run before its checkpoint is written.
- Under DDP (``torchrun``) every process holds the data, the shuffled order is shared (same
  seed) and each global batch of ``train.batch_size`` slices is split between the processes;
  rank 0 alone validates and writes the run folder.
- Validation on the val split only (the test split is never read during training): Dice and
  HD per foreground class on the slice predictions; the best checkpoint has the highest mean
  foreground Dice.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from tqdm.auto import tqdm

from ctxseg.engine.augment import apply_augment
from ctxseg.engine.checkpoint import (
    get_rng_state,
    link_checkpoint,
    load_checkpoint,
    remove_partial_checkpoints,
    save_checkpoint,
    set_rng_state,
)
from ctxseg.engine.config import Config, OptimConfig, config_differences
from ctxseg.engine.distributed import DistContext, resolve_device
from ctxseg.engine.precision import resolve_fast_path
from ctxseg.engine.progress import RunLog, remove_partial_logs
from ctxseg.engine.run_lock import LOCK_NAME, RunLock
from ctxseg.engine.sampling import epoch_plan, epoch_seed, shard_batches
from ctxseg.engine.stores import open_store
from ctxseg.engine.validation import validate_slices
from ctxseg.evaluation.report import write_json

__all__ = ["NonFiniteError", "Trainer"]

log = logging.getLogger(__name__)

# Config keys a resumed run may change; any other difference from the checkpoint is an error.
_RESUMABLE_CHANGES = ("train.epochs", "train.device", "train.val_every", "train.tensorboard")
_RUN_FILES = ("checkpoint_last.pt", "checkpoint_best.pt", "metrics.csv", "progress.png")


class NonFiniteError(RuntimeError):
    """A logged training value became NaN or infinite; the last good checkpoint is kept."""


def _release_run_dir_on_error(init: Callable[..., None]) -> Callable[..., None]:
    """A failed ``__init__`` gives the run folder's lock back (and removes the folder it made)."""

    @functools.wraps(init)
    def wrapper(self: Trainer, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except BaseException:
            self._release_run_dir(remove_if_new=True)
            raise

    return wrapper


class Trainer:
    """Trains a segmentation network on a prepared store and writes a run folder.

    Args:
        config: the experiment.
        run_dir: the run folder (created).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or a device; default ``config.train.device``.
        quiet: no progress bars and no per-epoch log lines.
        resume: continue from ``run_dir/checkpoint_last.pt``.
        overwrite: replace the checkpoints and metrics of an existing run in ``run_dir``.

    Attributes (the hooks of docs/ENGINE_CONTRACT): ``config``, ``device``, ``model`` (DDP-wrapped
    when distributed), ``module`` (unwrapped), ``optimizer``, ``loss_fn``, ``store``,
    ``is_main``.

    Raises:
        RunLockedError: another process trains into ``run_dir`` (``run_dir/.lock``).
        FileExistsError: ``run_dir`` holds a run and neither ``resume`` nor ``overwrite``.
        FileNotFoundError: ``resume`` in a folder that never held this run; a real dataset not
            prepared yet.
        ValueError: an invalid setting (batch size not divisible by the processes, a resumed
            config that differs from the checkpoint's, ...).
    """

    @_release_run_dir_on_error
    def __init__(
        self,
        config: Config,
        run_dir: str | Path,
        device: str | torch.device | None = None,
        quiet: bool = False,
        resume: bool = False,
        overwrite: bool = False,
    ) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.quiet = quiet
        train = config.train
        self.dist = DistContext.from_env(device or train.device)
        self.is_main = self.dist.is_main
        self.device = resolve_device(device or train.device, self.dist.local_rank)
        if train.batch_size % self.dist.world_size:
            raise ValueError(
                f"train.batch_size {train.batch_size} is not divisible by the "
                f"{self.dist.world_size} processes"
            )
        cuda = self.device.type == "cuda"
        self.fast = resolve_fast_path(self.device, train.amp, train.channels_last)
        self.amp = self.fast.bf16
        self.channels_last = self.fast.channels_last
        if cuda:  # fixed slice size: let cuDNN pick the fastest kernels once
            torch.backends.cudnn.benchmark = True
        self._take_run_dir()
        self._check_run_dir(resume, overwrite)

        self.store = open_store(config.data.root, self.dist)
        self.num_classes = self.store.num_classes
        torch.manual_seed(config.seed)  # the same initial weights on every process
        self.module = self._create_model().to(self.device)
        if self.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)
        self.model = self.wrap_ddp(self.module)
        self._schedules: list[tuple[torch.optim.Optimizer, OptimConfig]] = []
        self.optimizer = self.make_optimizer(self.module.parameters(), config.optim)
        self.loss_fn = self._create_loss().to(self.device)
        self._load_data()
        self.start_epoch = 0
        self.best: dict[str, Any] = {"value": None, "epoch": None}
        self.setup_extra()

        keep_until = None
        if resume:
            keep_until = self._resume()
        self.log = RunLog(self.run_dir, self.is_main, train.tensorboard, keep_until)
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            text = yaml.safe_dump(config.to_dict(), sort_keys=False)
            (self.run_dir / "config.yaml").write_text(text)
            self._record_runtime()
        log.info("%s on %s: %s", self.run_dir, self.device, self.fast.reason)

    def _record_runtime(self) -> None:
        """Append this start's device and fast path to ``runtime.json`` (one entry a start)."""
        path = self.run_dir / "runtime.json"
        starts = []
        if path.is_file() and self.start_epoch > 0:  # a resumed run adds to its record
            try:
                starts = json.loads(path.read_text())["starts"]
            except (ValueError, KeyError, TypeError):
                log.warning("%s unreadable: starting a new runtime record", path)
        entry = {"from_epoch": self.start_epoch, "device": str(self.device), **self.fast.to_dict()}
        write_json(path, {"starts": [*starts, entry]})

    # ------------------------------------------------------------------ hooks (ENGINE_CONTRACT)

    def setup_extra(self) -> None:
        """Build more modules / optimisers (e.g. a discriminator); called before a resume."""

    def extra_state(self) -> dict[str, Any]:
        """More state to checkpoint (e.g. the discriminator and its optimiser)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""

    def autocast(self) -> AbstractContextManager:
        """bf16 autocast on the device when the fast path uses it, else a no-op context."""
        return self.fast.autocast()

    def make_optimizer(self, params: Any, cfg: OptimConfig) -> torch.optim.Optimizer:
        """An optimiser from an :class:`OptimConfig`; its step schedule is applied each epoch."""
        # One fused kernel on CUDA; on the CPU the multi-tensor path (the default there is a
        # per-parameter loop, several times slower for the U-Nets' many tensors).
        if cfg.name == "adam":
            fused = {"fused": True} if self.device.type == "cuda" else {"foreach": True}
            optimizer = torch.optim.Adam(
                params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, **fused
            )
        else:
            optimizer = torch.optim.SGD(
                params,
                lr=cfg.lr,
                momentum=cfg.momentum,
                weight_decay=cfg.weight_decay,
                foreach=True,
            )
        self._schedules.append((optimizer, cfg))
        return optimizer

    def wrap_ddp(self, module: nn.Module) -> nn.Module:
        """``DistributedDataParallel(module)`` when distributed, else ``module`` itself."""
        if not self.dist.enabled:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def train_step(self, image: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """One optimiser step on a batch; returns the loss parts as detached scalars.

        Shape:
            image: ``(B, 1, H, W)`` float32; target: ``(B, H, W)`` int64; on ``self.device``.
        """
        with self.autocast():
            logits = self.model(image)  # (B, C, H, W)
        parts = self.loss_fn.parts(logits.float(), target)
        self.optimizer.zero_grad(set_to_none=True)
        parts["loss"].backward()
        self.optimizer.step()
        return {key: value.detach() for key, value in parts.items()}

    def _trained_params(self) -> list[torch.Tensor]:
        """Every parameter some optimiser updates (the model's and any from setup_extra)."""
        return [
            param
            for optimizer, _ in self._schedules
            for group in optimizer.param_groups
            for param in group["params"]
        ]

    # ------------------------------------------------------------------ set-up

    def _take_run_dir(self) -> None:
        """Lock the run folder (rank 0; one process per folder) and clear a killed run's debris."""
        self._lock: RunLock | None = None
        self._new_run_dir = not self.run_dir.exists()
        # A run began here before (its config, log or a killed process's lock is there): with
        # no checkpoint yet, --resume starts it from epoch 0. Every rank looks before rank 0 locks.
        traces = ("config.yaml", "metrics.csv", LOCK_NAME)
        self._began_here = any((self.run_dir / name).exists() for name in traces)
        self.dist.barrier()
        if not self.is_main:
            return
        self._lock = RunLock(self.run_dir).acquire()
        removed = remove_partial_checkpoints(self.run_dir) + remove_partial_logs(self.run_dir)
        if removed:
            log.info("%s: removed an interrupted run's partial files %s", self.run_dir, removed)

    def _release_run_dir(self, remove_if_new: bool = False) -> None:
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.release()
            self._lock = None
        if remove_if_new and getattr(self, "_new_run_dir", False):
            with suppress(OSError):  # only if still empty
                self.run_dir.rmdir()

    def _check_run_dir(self, resume: bool, overwrite: bool) -> None:
        existing = [n for n in _RUN_FILES if (self.run_dir / n).exists()]
        if not any(n.startswith("checkpoint_") for n in existing) and existing and not overwrite:
            # A run stopped after its first metrics row, before its first checkpoint: no weights
            # to resume or to lose. Start it again (plain or --resume); drop its orphan log.
            log.warning(
                "%s: the run there stopped before its first checkpoint; starting it again",
                self.run_dir,
            )
            if self.is_main:
                for name in existing:
                    (self.run_dir / name).unlink(missing_ok=True)
            return
        if not existing or resume:
            return
        if not overwrite:
            raise FileExistsError(
                f"run folder {self.run_dir} already holds a run ({', '.join(existing)}); "
                "resume it with --resume, replace it with --overwrite, or choose another --out"
            )
        self.dist.barrier()
        if self.is_main:
            for name in existing:
                (self.run_dir / name).unlink()
            shutil.rmtree(self.run_dir / "tensorboard", ignore_errors=True)
        self.dist.barrier()

    def _create_model(self) -> nn.Module:
        from ctxseg.models import create_model

        return create_model(self.config.model.name, in_channels=1, num_classes=self.num_classes)

    def _create_loss(self) -> nn.Module:
        from ctxseg.losses import build_loss

        kwargs = self.config.loss.kwargs()
        if self.config.loss.weights == "auto":
            # Over the slices this run trains on, so the weights match what the loss sees.
            fg_only = self.config.data.train_slices == "foreground"
            counts = self.store.class_frequencies("train", foreground_only=fg_only)
            kwargs["class_frequencies"] = counts.tolist()
        return build_loss(self.config.loss.name, self.num_classes, **kwargs)

    def _to_memory(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The slices of ``rows`` as (N, 1, H, W) float32 images and (N, H, W) uint8 labels."""
        images = torch.from_numpy(np.asarray(self.store.images[rows])).unsqueeze(1)
        labels = torch.from_numpy(np.asarray(self.store.labels[rows]))
        return images.to(self.data_device), labels.to(self.data_device)

    def _load_data(self) -> None:
        data = self.config.data
        train_rows = self.store.indices("train", foreground_only=data.train_slices == "foreground")
        val_rows = self.store.indices("val", foreground_only=data.val_slices == "foreground")
        if train_rows.size == 0:
            raise ValueError(
                f"{self.store.root}: no training slices (data.train_slices={data.train_slices})"
            )
        self.data_device = torch.device("cpu")
        if self.device.type == "cuda":
            pixels = (train_rows.size + val_rows.size) * int(np.prod(self.store.image_size))
            free, _ = torch.cuda.mem_get_info(self.device)
            if pixels * 5 < 0.4 * free:  # float32 image + uint8 label per pixel
                self.data_device = self.device
        self.train_images, self.train_labels = self._to_memory(train_rows)
        self.val_images, self.val_labels = self._to_memory(val_rows)
        log.debug(
            "data on %s: %d training and %d validation slices",
            self.data_device,
            train_rows.size,
            val_rows.size,
        )

    # ------------------------------------------------------------------ checkpoints

    def _state(self, epoch: int) -> dict[str, Any]:
        return {
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": epoch,
            "config": self.config.to_dict(),
            "rng": get_rng_state(),
            "extra": self.extra_state(),
            "best": dict(self.best),
            "num_classes": self.num_classes,
            "label_names": list(self.store.labels_names),
            "image_size": list(self.store.image_size),
            "preprocessing": self.store.meta.get("preprocessing"),
        }

    def _resume(self) -> int | None:
        path = self.run_dir / "checkpoint_last.pt"
        if not path.is_file():
            if self._began_here:  # stopped before its first checkpoint: nothing to lose
                log.info("%s: no checkpoint yet: resuming from epoch 0", self.run_dir)
                return None
            raise FileNotFoundError(f"nothing to resume: {path} does not exist")
        # On the CPU: RNG states must stay CPU tensors; load_state_dict moves the rest.
        state = load_checkpoint(path, map_location="cpu")
        changed = [
            key
            for key in config_differences(state["config"], self.config.to_dict())
            if key not in _RESUMABLE_CHANGES
        ]
        if changed:
            raise ValueError(
                f"cannot resume {path}: the config differs from the checkpoint's in {changed}"
            )
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.load_extra_state(state.get("extra", {}))
        self.best = dict(state["best"])
        self.start_epoch = int(state["epoch"])
        set_rng_state(state["rng"])
        log.info("resuming %s after epoch %d", self.run_dir, self.start_epoch)
        return self.start_epoch

    # ------------------------------------------------------------------ the loop

    def fit(self) -> dict[str, Any]:
        """Train ``train.epochs`` epochs (from the resumed epoch), validating and checkpointing.

        Returns:
            ``{"run_dir", "epochs", "best_value", "best_epoch", "last"}`` (``last``: the last
            metrics row, or None when there was nothing left to train).

        Raises:
            NonFiniteError: a training value became NaN or infinite.
        """
        train = self.config.train
        row = None
        try:
            for epoch in range(self.start_epoch, train.epochs):
                start = time.perf_counter()
                self.on_epoch_start(epoch)
                values = self._train_epoch(epoch)
                bad = [key for key, value in values.items() if not np.isfinite(value)]
                # A last step can leave NaN weights behind finite logged losses: check every
                # optimised parameter, a discriminator's included (one sync per epoch).
                weights = torch.stack([p.detach().isfinite().all() for p in self._trained_params()])
                if not bool(weights.all()):
                    bad.append("model weights")
                if bad:
                    raise NonFiniteError(
                        f"epoch {epoch + 1}: non-finite training value(s) {bad} "
                        f"({values}); the last good checkpoint is kept"
                    )
                row = {"epoch": epoch + 1, **{f"train_{k}": v for k, v in values.items()}}
                last = epoch + 1 == train.epochs
                if self.is_main and ((epoch + 1) % train.val_every == 0 or last):
                    row.update(self._validate())
                row["lr"] = self.optimizer.param_groups[0]["lr"]
                row["time"] = round(time.perf_counter() - start, 3)
                self._end_epoch(epoch, row)
                self.dist.barrier()
        finally:
            self.log.close()
            self._release_run_dir()
        self.dist.close()
        return {
            "run_dir": str(self.run_dir),
            "epochs": train.epochs,
            "best_value": self.best["value"],
            "best_epoch": self.best["epoch"],
            "last": row,
        }

    def on_epoch_start(self, epoch: int) -> None:
        """Set every optimiser's learning rate for the 0-based ``epoch``; train mode."""
        for optimizer, cfg in self._schedules:
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr_at(epoch)
        self.model.train()

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        train, world, rank = self.config.train, self.dist.world_size, self.dist.rank
        seed = epoch_seed(self.config.seed, epoch)
        torch.manual_seed(seed)  # anything drawing from the global generator repeats on resume
        n = self.train_images.shape[0]
        order, params = epoch_plan(n, seed, world, self.config.data.augment)
        order = order.to(self.data_device)
        params = None if params is None else params.to(self.device)
        pad = order.shape[0] - n
        sums: dict[str, torch.Tensor] = {}
        steps, shown = 0, time.monotonic()
        bar = tqdm(
            total=(n + pad) // world,
            unit="slice",
            desc=f"epoch {epoch + 1}/{train.epochs}",
            disable=self.quiet or not self.is_main,
            leave=False,
            dynamic_ncols=True,
        )
        for start, index in shard_batches(order, train.batch_size, rank, world):
            image = self.train_images[index].to(self.device, non_blocking=True)
            target = self.train_labels[index].to(self.device, non_blocking=True).long()
            if params is not None:
                share = params[start : start + train.batch_size][rank::world]  # (b, 4)
                image, target = apply_augment(image, target, share)
            if self.channels_last:
                image = image.contiguous(memory_format=torch.channels_last)
            parts = self.train_step(image, target)
            for key, value in parts.items():
                total = sums.get(key)
                sums[key] = value.float() if total is None else total + value.float()
            steps += 1
            bar.update(index.shape[0])
            if not bar.disable and time.monotonic() - shown > 1.0:  # <= one host sync a second
                bar.set_postfix(loss=f"{float(sums['loss']) / steps:.4f}")
                shown = time.monotonic()
        bar.close()
        keys = list(sums)
        means = torch.stack([sums[k] for k in keys]) / steps  # (K,): one sync below
        means = self.dist.all_reduce_mean(means)
        return dict(zip(keys, means.tolist(), strict=True))

    def _validate(self) -> dict[str, float]:
        """Validation Dice and HD per foreground class on the val slices (rank 0 only)."""
        return validate_slices(
            self.module,
            self.val_images,
            self.val_labels,
            self.store.labels_names,
            batch_size=max(self.config.train.batch_size, 32),
            device=self.device,
            amp=self.amp,
            channels_last=self.channels_last,
            with_hd=self.config.train.val_hd,
        )

    def _end_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        dice = row.get("val_dice_mean")
        improved = dice is not None and np.isfinite(dice)
        improved = improved and (self.best["value"] is None or dice > self.best["value"])
        if improved:
            self.best = {"value": float(dice), "epoch": epoch + 1}
        if not self.is_main:
            return
        self.log.append(row)
        state = self._state(epoch + 1)
        last, best = self.run_dir / "checkpoint_last.pt", self.run_dir / "checkpoint_best.pt"
        if improved or (epoch + 1 == self.config.train.epochs and self.best["value"] is None):
            # Without any finite validation Dice (no val slices) the last epoch stands in.
            # Best first, then last as a link to it: one write, and a run killed in between
            # resumes from the previous last checkpoint and repeats this epoch exactly.
            save_checkpoint(best, state)
            link_checkpoint(best, last)
        else:
            save_checkpoint(last, state)
        self.log.plot()
        if not self.quiet:
            shown = {k: round(v, 4) for k, v in row.items() if isinstance(v, float)}
            log.info("epoch %d/%d %s", epoch + 1, self.config.train.epochs, shown)
