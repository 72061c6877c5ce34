"""The run folder's record of training: ``metrics.csv``, ``progress.png``, optional TensorBoard.

Only the main process (rank 0) writes. ``metrics.csv`` has one row per epoch; its columns are
the union of the keys seen so far (a column that appears later is blank in earlier rows). The
whole file is rewritten atomically each epoch (it is small), so a killed run never leaves a
torn line, and a resumed run drops the rows of epochs its checkpoint does not cover.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
from pathlib import Path
from typing import Any

from ctxseg.errors import os_error_at
from ctxseg.evaluation.report import remove_partials, write_text

__all__ = ["RunLog", "read_metrics", "remove_partial_logs"]

log = logging.getLogger(__name__)

# The temporaries of the atomic writes of metrics.csv (report.write_text) and progress.png.
_PARTIAL_PATTERNS = (".metrics.csv.tmp*", ".progress.tmp.png")


def remove_partial_logs(run_dir: str | os.PathLike) -> list[str]:
    """Delete the temporaries of log writes that never finished (a killed process).

    Only the process that owns the run folder (its lock) may call this.

    Returns:
        The names of the deleted files.
    """
    return remove_partials(run_dir, _PARTIAL_PATTERNS)


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a ``metrics.csv``: numbers as floats (``epoch`` as int), blank cells as None."""
    rows = []
    with open(path, newline="") as handle:
        for raw in csv.DictReader(handle):
            row: dict[str, Any] = {}
            for key, text in raw.items():
                row[key] = None if text in ("", None) else float(text)
            row["epoch"] = int(row["epoch"])
            rows.append(row)
    return rows


class RunLog:
    """Per-epoch metrics of a run, kept in memory and mirrored to the run folder.

    Args:
        run_dir: the run folder.
        enabled: write files (the main process only).
        tensorboard: also log every value to TensorBoard under ``run_dir/tensorboard``.
        keep_until: resume: keep the existing rows of epochs ``<= keep_until``; ``None``
            starts a new log.
    """

    def __init__(
        self,
        run_dir: Path,
        enabled: bool = True,
        tensorboard: bool = False,
        keep_until: int | None = None,
    ) -> None:
        self.path = Path(run_dir) / "metrics.csv"
        self.plot_path = Path(run_dir) / "progress.png"
        self.enabled = enabled
        self.rows: list[dict[str, Any]] = []
        if keep_until is not None and self.path.is_file():
            self.rows = [r for r in read_metrics(self.path) if r["epoch"] <= keep_until]
        self.writer = None
        if tensorboard and enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise ValueError(
                    "train.tensorboard: true needs the tensorboard package "
                    "(pip install 'ctxseg[tensorboard]')"
                ) from err
            self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def columns(self) -> list[str]:
        names: dict[str, None] = {}
        for row in self.rows:
            names.update(dict.fromkeys(row))
        return list(names)

    def append(self, row: dict[str, Any]) -> None:
        """Record one epoch's values (``row["epoch"]`` is 1-based) and rewrite the files."""
        self.rows.append(row)
        if not self.enabled:
            return
        self._write_csv()
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, int | float) and math.isfinite(value):
                    self.writer.add_scalar(key, value, row["epoch"])
            self.writer.flush()

    def _write_csv(self) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns(), restval="")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        write_text(self.path, buffer.getvalue())  # atomic; a failure names the file

    def plot(self) -> None:
        """Draw ``progress.png``: the training loss parts and the validation Dice per epoch."""
        if not self.enabled or not self.rows:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        columns = self.columns()
        fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(10, 4))
        for key in (c for c in columns if c.startswith("train_")):
            self._line(ax_loss, key)
        ax_loss.set(xlabel="epoch", ylabel="training loss", title="training")
        for key in (c for c in columns if c.startswith("val_dice_")):
            self._line(ax_dice, key, bold=key == "val_dice_mean")
        ax_dice.set(xlabel="epoch", ylabel="Dice", title="validation", ylim=(0, 1))
        for ax in (ax_loss, ax_dice):
            if ax.lines:
                ax.legend(fontsize="small")
            ax.grid(alpha=0.3)
        fig.tight_layout()
        tmp = self.plot_path.with_name(f".{self.plot_path.stem}.tmp.png")
        try:
            fig.savefig(tmp, dpi=80)
            os.replace(tmp, self.plot_path)
        except BaseException as err:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            if isinstance(err, OSError) and err.filename is None:
                raise os_error_at(err, self.plot_path, " (the previous file is kept)") from err
            raise
        finally:
            plt.close(fig)

    def _line(self, ax: Any, key: str, bold: bool = False) -> None:
        points = [
            (r["epoch"], r[key])
            for r in self.rows
            if r.get(key) is not None and math.isfinite(r[key])
        ]
        if points:
            epochs, values = zip(*points, strict=True)
            ax.plot(epochs, values, marker=".", label=key, linewidth=2.5 if bold else 1.2)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
