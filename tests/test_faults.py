"""Fault injection: kills, corrupt and hostile files, a full disk, concurrent runs, bad input.

Each test shows one promise of docs/reliability.md: nothing written is lost or half-written,
every refusal names the file and the problem (one line at the command line, no traceback), and
no code runs from a data file. The kill -9 loop at the end is opt-in (``--run-slow``); its
figures are in docs/reliability.md.

The full-disk and read-only cases mount a small tmpfs (root only); where that is impossible they
are skipped with the reason, and ``test_enospc_at_fsync_*`` simulates the same error at the OS
call (``os.fsync``) so the code path is covered everywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import json
import logging
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import yaml

from ctxseg.cli import build_parser, main
from ctxseg.data.preprocess import make_params
from ctxseg.data.store import PreparedStore, StoreError
from ctxseg.engine.checkpoint import load_checkpoint
from ctxseg.engine.config import load_config
from ctxseg.engine.predict import predict
from ctxseg.engine.progress import read_metrics
from ctxseg.engine.run_lock import RunLock, RunLockedError
from ctxseg.engine.trainer import Trainer
from ctxseg.evaluation.evaluate import evaluate_run
from ctxseg.evaluation.table import collect_rows
from test_predict import tiny_checkpoint
from test_resume import assert_same_run
from test_trainer import make_store, run_cli, write_config

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "ctxseg"]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny experiment (2 epochs of unet32 on 32 x 32 slices) and its uninterrupted run."""
    tmp = tmp_path_factory.mktemp("faults")
    root = make_store(tmp / "tiny")
    config_path = write_config(tmp / "c.yaml", root)
    reference = tmp / "reference"
    Trainer(load_config(config_path), reference, quiet=True).fit()
    return config_path, reference


# ---------------------------------------------------------------------------------- helpers


def start_train(config_path: Path, run: Path, log: Path, *extra: str) -> subprocess.Popen:
    """``ctxseg train CONFIG --out RUN --quiet EXTRA`` in its own process, stderr to ``log``."""
    argv = [*CLI, "train", str(config_path), "--out", str(run), "--quiet", *extra]
    with open(log, "w") as handle:
        # SIGINT back to its default in the child: a shell starts background jobs (CI run with
        # `&` or nohup) with SIGINT ignored, and Python then never raises KeyboardInterrupt.
        return subprocess.Popen(
            argv,
            cwd=REPO,
            stdout=handle,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )


def wait_for(ready: Callable[[], bool], process: subprocess.Popen, what: str, log: Path) -> None:
    deadline = time.monotonic() + 180
    while not ready():
        if process.poll() is not None:
            raise AssertionError(f"the process ended ({process.returncode}) before {what}:\n"
                                 f"{log.read_text()}")  # fmt: skip
        assert time.monotonic() < deadline, f"no {what} after 180 s"
        time.sleep(0.02)


def error_lines(err: str, verb: str) -> list[str]:
    """The ``ctxseg VERB: ...`` lines of a stderr text, after checking it has no traceback."""
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith(f"ctxseg {verb}:")]


@contextlib.contextmanager
def tmpfs(path: Path, size: int, options: str = "") -> Iterator[Path]:
    """A tmpfs of ``size`` bytes mounted at ``path``; skips the test where none can be mounted."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (f",{options}" if options else "")
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
    except FileNotFoundError:
        pytest.skip("no `mount` command here: the tmpfs case needs it (the fsync case stands in)")
    if done.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): {done.stderr.strip()}; "
            "test_enospc_at_fsync_* covers the same path by simulation"
        )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, size: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def write_scan(path: Path, seed: int, shape: tuple[int, int, int] = (3, 40, 36)) -> None:
    rng = np.random.default_rng(seed)
    image = sitk.GetImageFromArray(rng.integers(0, 1000, shape).astype(np.int16))
    image.SetSpacing((1.0, 1.0, 3.0))
    sitk.WriteImage(image, str(path))


# ---------------------------------------------------------------- losing or mixing results


def test_a_second_train_into_a_busy_run_folder_is_refused_naming_the_holder(
    tiny: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture, caplog
) -> None:
    config_path, _ = tiny
    run, log = tmp_path / "run", tmp_path / "first.log"
    first = start_train(config_path, run, log, "--epochs", "40")
    try:
        wait_for(lambda: (run / "config.yaml").is_file(), first, "its config.yaml", log)
        code = run_cli("train", config_path, "--out", run, "--quiet", "--set", "seed=5")
        (line,) = error_lines(capsys.readouterr().err, "train")
        assert code == 2
        assert f"pid {first.pid}" in line and "in use" in line and str(run) in line
        assert first.poll() is None  # the first run goes on, untouched
    finally:
        first.kill()
        first.wait()
    assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == 3  # the first run's
    # kill -9 left the lock file behind: a stale lock, recognised and taken over.
    assert json.loads((run / ".lock").read_text())["pid"] == first.pid
    with caplog.at_level(logging.WARNING, logger="ctxseg.engine.run_lock"):
        lock = RunLock(run).acquire()
    assert json.loads((run / ".lock").read_text())["pid"] == os.getpid()
    lock.release()
    assert f"stale lock of pid {first.pid}" in caplog.text
    assert not (run / ".lock").exists()


def test_without_flock_the_run_lock_decides_by_the_recorded_pid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    """Some network file systems have no flock: a live holder on this host still refuses, one
    on another host refuses with a hint, a dead one on this host is taken over."""
    import fcntl

    def no_flock(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_flock)
    run = tmp_path / "run"
    run.mkdir()
    host = socket.gethostname()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (run / ".lock").write_text(json.dumps({"pid": sleeper.pid, "host": host, "since": 0}))
        with pytest.raises(RunLockedError, match=rf"in use by pid {sleeper.pid} on {host}"):
            RunLock(run).acquire()
        (run / ".lock").write_text(json.dumps({"pid": sleeper.pid, "host": "node7"}))
        with pytest.raises(RunLockedError, match=r"on node7 .*delete .*\.lock"):
            RunLock(run).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    (run / ".lock").write_text(json.dumps({"pid": sleeper.pid, "host": host}))
    with caplog.at_level(logging.WARNING, logger="ctxseg.engine.run_lock"):
        lock = RunLock(run).acquire()
    assert f"stale lock of pid {sleeper.pid}" in caplog.text
    assert json.loads((run / ".lock").read_text())["pid"] == os.getpid()
    lock.release()


def test_predict_refuses_two_inputs_with_one_output_name_before_any_model_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny_checkpoint(tmp_path / "ckpt.pt", make_params(size=(32, 32)))
    scans = tmp_path / "scans"
    scans.mkdir()
    write_scan(scans / "Case01.mhd", seed=0)
    write_scan(scans / "Case01.mha", seed=1)  # another scan: both would become Case01_pred.mha

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the inputs and outputs were checked")

    monkeypatch.setattr("ctxseg.engine.checkpoint.load_model", no_model)
    with pytest.raises(ValueError, match=r"Case01\.mha.*Case01\.mhd.*Case01_pred\.mha"):
        predict(tmp_path / "ckpt.pt", scans, tmp_path / "out", device="cpu")
    assert not (tmp_path / "out").exists()


def test_predict_into_its_input_folder_skips_its_own_earlier_outputs(tmp_path: Path) -> None:
    tiny_checkpoint(tmp_path / "ckpt.pt", make_params(size=(32, 32)))
    scans = tmp_path / "scans"
    scans.mkdir()
    write_scan(scans / "Case01.nii.gz", seed=0)
    write_scan(scans / "Case02.mha", seed=1)
    first = predict(tmp_path / "ckpt.pt", scans, scans, device="cpu")
    again = predict(tmp_path / "ckpt.pt", scans, scans, device="cpu")
    assert [p.name for p in first] == [p.name for p in again]
    assert [p.name for p in again] == ["Case01_pred.nii.gz", "Case02_pred.mha"]
    assert sorted(p.name for p in scans.iterdir()) == [
        "Case01.nii.gz",
        "Case01_pred.nii.gz",
        "Case02.mha",
        "Case02_pred.mha",
    ]


def test_partial_checkpoint_files_of_a_killed_run_are_removed_on_its_next_start(
    tiny: tuple[Path, Path], tmp_path: Path
) -> None:
    config_path, reference = tiny
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    partial = [  # what kill -9 leaves while a checkpoint, its link or a log file is written
        ".checkpoint_last.pt.k2j3h4x1.tmp",
        ".checkpoint_best.pt.0a9b8c7d.tmp",
        ".checkpoint_last.pt.4242.link",
        ".metrics.csv.tmp4242",
        ".progress.tmp.png",
    ]
    for name in partial:
        (run / name).write_bytes(os.urandom(4096))
    (run / "notes.tmp").write_text("the user's own file")
    assert run_cli("train", config_path, "--out", run, "--quiet", "--resume") == 0  # all done
    assert [name for name in partial if (run / name).exists()] == []
    assert (run / "notes.tmp").read_text() == "the user's own file"
    assert_same_run(run, reference)


def test_a_run_killed_before_its_first_checkpoint_starts_again_plain_or_resumed(
    tiny: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """metrics.csv has a row, no checkpoint exists: both a plain start and --resume train it."""
    config_path, reference = tiny
    run = tmp_path / "run"

    def killed(path: Path, state: dict) -> None:
        raise KeyboardInterrupt("killed before the first checkpoint was written")

    monkeypatch.setattr("ctxseg.engine.trainer.save_checkpoint", killed)
    with pytest.raises(KeyboardInterrupt):
        Trainer(load_config(config_path), run, quiet=True).fit()
    monkeypatch.undo()
    assert [r["epoch"] for r in read_metrics(run / "metrics.csv")] == [1]
    assert not list(run.glob("checkpoint_*"))
    plain = tmp_path / "plain"
    shutil.copytree(run, plain)
    Trainer(load_config(config_path), plain, quiet=True)  # a plain start is accepted ...
    assert not (plain / "metrics.csv").exists()  # ... and drops the orphan log
    assert run_cli("train", config_path, "--out", run, "--quiet", "--resume") == 0, (
        capsys.readouterr().err
    )
    assert_same_run(run, reference)  # resumed from epoch 0: the uninterrupted run
    # Killed even earlier, while loading its data: only the dead process's lock is there.
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / ".lock").write_text(json.dumps({"pid": 2**22 + 1, "host": socket.gethostname()}))
    trainer = Trainer(load_config(config_path), bare, quiet=True, resume=True)
    assert trainer.start_epoch == 0


# --------------------------------------------------------------------- silent wrong results


def test_a_store_with_label_values_outside_its_classes_is_refused_by_file_and_value(
    tiny: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _, reference = tiny
    root = make_store(tmp_path / "tiny")  # 3 classes, 5 cases of 3 slices
    labels = np.load(root / "labels.npy", mmap_mode="r+")
    labels[7, 3, 4] = 9  # case c2, its slice 1
    labels[8, 0, 0] = 3
    labels.flush()
    del labels
    with pytest.raises(StoreError) as info:
        PreparedStore.open(root)
    message = str(info.value)
    assert str(root / "labels.npy") in message
    assert "[3, 9]" in message and "'c2'" in message and "3 classes" in message

    config_path = write_config(tmp_path / "c.yaml", root)
    assert run_cli("train", config_path, "--out", tmp_path / "run", "--quiet") == 2
    (line,) = error_lines(capsys.readouterr().err, "train")
    assert "labels.npy" in line and "[3, 9]" in line
    code = run_cli("evaluate", reference, "--device", "cpu", "--data-root", root)
    (line,) = error_lines(capsys.readouterr().err, "evaluate")
    assert code == 2 and "[3, 9]" in line


@pytest.mark.parametrize(
    ("config", "overrides"),
    [
        ("promise12/unet_ce", ["adversarial.lambda_adv=0.1"]),  # adds a discriminator
        ("promise12/seg_glgan_static", ["adversarial=null"]),  # removes it
        ("promise12/unet_ce", ["loss.name=dice"]),
        ("promise12/gan", ["adversarial.discriminator=context"]),  # GAN -> Seg-GLGAN
        ("promise12/unet_context_static", ["loss.roi=dynamic"]),
        ("promise12/unet_context_static", ["loss={name: ce}"]),
    ],
)
def test_an_override_that_changes_the_kind_of_experiment_needs_a_new_name(
    config: str, overrides: list[str]
) -> None:
    with pytest.raises(ValueError) as info:
        load_config(config, overrides)
    message = str(info.value)
    assert overrides[0] in message and "--set experiment=" in message
    assert config.split("/")[1] in message
    renamed = load_config(config, [*overrides, "experiment=my_variant"])
    assert renamed.experiment == "my_variant"
    assert renamed.derived_from is not None
    assert config.split("/")[1] in renamed.derived_from and overrides[0] in renamed.derived_from
    assert renamed.to_dict()["derived_from"] == renamed.derived_from  # saved with every run
    # The same name is no new name; a hyper-parameter change keeps the kind and needs none.
    with pytest.raises(ValueError, match="--set experiment="):
        load_config(config, [*overrides, f"experiment={config.split('/')[1]}"])
    assert load_config(config, ["optim.lr=1e-3", "loss.lambda_roi=0.5"]).derived_from is None


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("optim.lr=.inf", "optim.lr"),
        ("optim.lr=1e999", "optim.lr"),  # overflows to inf
        ("loss.alpha=.nan", "loss.alpha"),
        ("loss.alpha=[0.25, .nan]", "loss.alpha[1]"),
        ("loss.gamma=.inf", "loss.gamma"),
        ("loss.lambda_roi=.inf", "loss.lambda_roi"),
        ("loss.weights=[.inf, 1]", "loss.weights[0]"),
        ("optim.betas=[.nan, 0.9]", "optim.betas[0]"),
        ("optim.weight_decay=-.inf", "optim.weight_decay"),
        ("adversarial.lambda_adv=.nan", "adversarial.lambda_adv"),
        ("adversarial.optim.lr=.inf", "adversarial.optim.lr"),
    ],
)
def test_non_finite_settings_are_refused_naming_the_key(override: str, key: str) -> None:
    with pytest.raises(ValueError) as info:
        load_config("promise12/seg_glgan_static", [override])
    assert f"{key}: must be a finite number" in str(info.value)


def test_table_and_evaluate_agree_on_a_trained_run(
    tiny: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _, reference = tiny
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    result = evaluate_run(run, device="cpu", quiet=True)
    assert main(["table", str(run)]) == 0
    printed = capsys.readouterr().out
    (row,) = collect_rows([run])
    assert row["slice_dice"] == pytest.approx(result["slice"]["mean"]["dice"], nan_ok=True)
    assert row["slice_hd"] == pytest.approx(result["slice"]["mean"]["hd"], nan_ok=True)
    volume = result["volume"]["mean"]
    assert row["volume_dice"] == pytest.approx(volume["dice"], nan_ok=True)
    assert row["volume_hd95"] == pytest.approx(volume["hd95"], nan_ok=True)
    assert f"{result['slice']['mean']['dice']:.4f}" in printed


# ------------------------------------------------------------------------ cryptic failures


def test_ctrl_c_inside_exec_of_source_text_still_exits_130(tmp_path: Path) -> None:
    """CPython flags a KeyboardInterrupt raised in exec() of a string (a namedtuple or enum
    being built while matplotlib is first imported at the end of epoch 1) as unhandled even
    once caught, and `python -m` then ended by SIGINT (-2): the flake of the test below."""
    probe = tmp_path / "ctrl_c_probe"
    probe.mkdir()
    (probe / "__main__.py").write_text(
        "import ctxseg.engine.cli as verbs\n"
        "from ctxseg.cli import main\n"
        "def interrupted(args):\n"
        "    exec('raise KeyboardInterrupt')  # the Ctrl-C lands in text run by exec()\n"
        "verbs.run_train = interrupted\n"
        "raise SystemExit(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO / "src")])}
    done = subprocess.run(
        [sys.executable, "-m", "ctrl_c_probe", "train", "any.yaml"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (130, "ctxseg train: interrupted\n")


def test_ctrl_c_during_training_prints_one_line_with_the_exact_resume_command(
    tiny: tuple[Path, Path], tmp_path: Path
) -> None:
    config_path, reference = tiny
    run, log = tmp_path / "run", tmp_path / "train.log"
    process = start_train(config_path, run, log, "--set", "train.val_every=1")
    try:
        wait_for(lambda: (run / "checkpoint_last.pt").is_file(), process, "a checkpoint", log)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
    finally:
        process.kill()
        process.wait()
    (line,) = error_lines(log.read_text(), "train")
    assert process.returncode == 130, log.read_text()
    assert f"{run / 'checkpoint_last.pt'} (epoch 1 of 2)" in line
    argv = shlex.split(line.split("continue with: ", 1)[1])
    assert argv[:2] == ["ctxseg", "train"] and argv[-1] == "--resume"
    assert "train.val_every=1" in argv
    assert run_cli(*argv[1:]) == 0  # the command exactly as printed
    assert_same_run(run, reference)


def test_a_full_disk_during_training_is_one_line_and_keeps_the_last_checkpoint(
    tiny: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config_path, reference = tiny
    size = (reference / "checkpoint_last.pt").stat().st_size
    with tmpfs(tmp_path / "disk", size=int(size * 1.5)) as disk:
        run = disk / "run"
        code = run_cli("train", config_path, "--out", run, "--quiet")
        (line,) = error_lines(capsys.readouterr().err, "train")
        assert code == 2
        assert "No space left on device" in line and str(run / "checkpoint_") in line
        assert load_checkpoint(run / "checkpoint_last.pt")["epoch"] == 1  # intact
        assert [r["epoch"] for r in read_metrics(run / "metrics.csv")] == [1, 2]
        assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []
        remount(disk, size * 3)  # space freed: the run resumes and ends as if never stopped
        assert run_cli("train", config_path, "--out", run, "--quiet", "--resume") == 0
        assert_same_run(run, reference)


def test_enospc_at_fsync_while_saving_a_checkpoint_is_one_line_and_keeps_the_last_one(
    tiny: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The full disk simulated at the OS call (runs where no tmpfs can be mounted)."""
    config_path, reference = tiny
    calls = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:  # the checkpoint of epoch 2
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    run = tmp_path / "run"
    code = run_cli("train", config_path, "--out", run, "--quiet")
    monkeypatch.undo()
    (line,) = error_lines(capsys.readouterr().err, "train")
    assert code == 2 and "No space left on device" in line and str(run) in line
    assert load_checkpoint(run / "checkpoint_last.pt")["epoch"] == 1
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []
    assert run_cli("train", config_path, "--out", run, "--quiet", "--resume") == 0
    assert_same_run(run, reference)


def test_a_full_disk_during_prepare_is_one_line_and_keeps_the_old_store(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with tmpfs(tmp_path / "disk", size=40 << 20) as disk:
        store = disk / "phantom"
        argv = ["prepare", "phantom-prostate", "--out", str(store), "--cases", "3"]
        assert main(argv) == 0
        before = digest(store)
        capsys.readouterr()
        code = main([*argv, "--seed", "1", "--overwrite"])  # needs twice the space
        (line,) = error_lines(capsys.readouterr().err, "prepare")
        assert code == 2 and "No space left on device" in line and str(store) in line
        assert digest(store) == before  # the old store, whole
        PreparedStore.open(store)
        assert sorted(p.name for p in disk.iterdir()) == ["phantom"]  # no temporary left


def test_a_full_disk_while_writing_a_report_names_the_file_and_keeps_the_old_one(
    tmp_path: Path,
) -> None:
    """metrics.csv, summary.json and the other text files go through report's atomic writers."""
    from ctxseg.evaluation.report import write_csv, write_json, write_text

    with tmpfs(tmp_path / "disk", size=64 << 10) as disk:
        path = disk / "metrics.csv"
        write_text(path, "epoch\n1\n")
        writers = [
            lambda: write_text(path, "x" * (200 << 10)),
            lambda: write_json(path, {"x": "y" * (200 << 10)}),
            lambda: write_csv(path, [{"x": "y" * (200 << 10)}], ["x"]),
        ]
        for write in writers:
            with pytest.raises(OSError) as info:
                write()
            assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
            assert path.read_text() == "epoch\n1\n"
            assert sorted(p.name for p in disk.iterdir()) == ["metrics.csv"]


def test_predict_into_a_file_or_an_unwritable_folder_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    tiny_checkpoint(tmp_path / "ckpt.pt", make_params(size=(32, 32)))
    write_scan(tmp_path / "Case01.mha", seed=0)
    base = ["predict", "--checkpoint", str(tmp_path / "ckpt.pt"), "--device", "cpu"]
    (tmp_path / "afile").write_text("x")
    scan = str(tmp_path / "Case01.mha")
    code = main([*base, "--input", scan, "--output", str(tmp_path / "afile")])
    (line,) = error_lines(capsys.readouterr().err, "predict")
    assert code == 2 and "Errno" not in line
    assert str(tmp_path / "afile") in line and "not a folder" in line
    with tmpfs(tmp_path / "ro", size=1 << 20, options="ro") as readonly:
        code = main([*base, "--input", scan, "--output", str(readonly)])
        (line,) = error_lines(capsys.readouterr().err, "predict")
        assert code == 2 and str(readonly) in line and "Read-only file system" in line


def test_truncated_zraw_says_truncated(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from ctxseg.data.io import RawDataError, read_volume

    write_scan(tmp_path / "Case00.mhd", seed=0, shape=(6, 64, 64))
    image = sitk.ReadImage(str(tmp_path / "Case00.mhd"))
    for compress, data in ((True, "Case01.zraw"), (False, "Case01.raw")):
        sitk.WriteImage(image, str(tmp_path / "Case01.mhd"), useCompression=compress)
        with open(tmp_path / data, "r+b") as handle:
            handle.truncate((tmp_path / data).stat().st_size // 2)
        with pytest.raises(RawDataError) as info:
            read_volume(tmp_path / "Case01.mhd")
        message = str(info.value)
        assert "No such file" not in message
        assert str(tmp_path / data) in message and "truncated" in message
        (tmp_path / data).unlink()


def test_a_broken_or_hostile_checkpoint_is_refused_without_torch_advice(
    tiny: tuple[Path, Path], tmp_path: Path
) -> None:
    _, reference = tiny
    witness = tmp_path / "code-ran"

    class Hostile:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {witness}",))

    (tmp_path / "random.pt").write_bytes(random.Random(0).randbytes(10_000))
    whole = (reference / "checkpoint_last.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(whole[: len(whole) // 2])
    torch.save({"model": Hostile(), "config": {}, "num_classes": 2}, tmp_path / "hostile.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    expected = {
        "random.pt": "not a PyTorch checkpoint file",
        "truncated.pt": "truncated or corrupt",
        "hostile.pt": "refused: it holds Python code (posix.system)",
        "list.pt": "not a ctxseg checkpoint (a list)",
        "foreign.pt": "not a ctxseg checkpoint (missing ['model', 'config', 'num_classes'])",
    }
    for name, problem in expected.items():
        with pytest.raises(ValueError) as info:
            load_checkpoint(tmp_path / name)
        message = str(info.value)
        assert message.startswith(f"{tmp_path / name}: ") and problem in message, message
        assert "weights_only" not in message and "\n" not in message
    assert not witness.exists()


def test_a_truncated_or_hostile_store_array_is_named_alone(tmp_path: Path) -> None:
    witness = tmp_path / "code-ran"

    class Hostile:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {witness}",))

    for name in ("images.npy", "labels.npy"):
        root = make_store(tmp_path / name.split(".")[0], cases=3, slices=2)
        path = root / name
        with open(path, "r+b") as handle:
            handle.truncate(path.stat().st_size - 100)
        with pytest.raises(StoreError) as info:
            PreparedStore.open(root)
        message = str(info.value)
        assert message.startswith(f"{path}: truncated") and "images.npy / labels" not in message
        np.save(path, np.array([Hostile()], dtype=object), allow_pickle=True)
        with pytest.raises(StoreError, match=rf"{re.escape(str(path))}: .*Python objects"):
            PreparedStore.open(root)
    assert not witness.exists()


def test_a_yaml_object_tag_in_a_config_is_refused_and_never_run(tmp_path: Path) -> None:
    witness = tmp_path / "code-ran"
    path = tmp_path / "c.yaml"
    path.write_text(f"experiment: !!python/object/apply:os.system ['touch {witness}']\n")
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: not valid YAML"):
        load_config(path)
    assert not witness.exists()


def _parsers(parser: argparse.ArgumentParser, name: str = "ctxseg") -> Iterator[tuple]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                yield from _parsers(child, f"{name} {sub}")


def test_every_help_text_is_plain_and_shows_its_default() -> None:
    problems = []
    for name, parser in _parsers(build_parser()):
        texts = [parser.description or ""]
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._VersionAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                texts += [a.help or "" for a in action._choices_actions]
                continue
            label = f"{name} {'/'.join(action.option_strings) or action.dest}"
            if not action.help:
                problems.append(f"{label}: no help")
                continue
            texts.append(action.help)
            flag = action.nargs == 0
            optional = action.option_strings and not flag and not action.required
            if optional and "default" not in action.help:
                problems.append(f"{label}: default not shown ({action.help!r})")
        for text in texts:
            for bad in ("``", "SPEC §", ":mod:", ":func:"):
                if bad in text:
                    problems.append(f"{name}: {bad!r} in {text[:60]!r}")
    assert problems == []


def test_the_docs_name_only_options_and_files_that_exist() -> None:
    parsers = dict(_parsers(build_parser()))
    problems = []
    for doc in DOCS:
        text = doc.read_text()
        spans = re.findall(r"`([^`\n]+)`", text) + text.splitlines()
        for span in spans:
            for match in re.finditer(r"\bctxseg ((?:prepare )?[a-z0-9-]+)((?: [^|;`]*)?)", span):
                verb, rest = match.groups()
                # `ctxseg prepare DATASET ...`: the options of any of its data sets
                wanted = f"ctxseg {verb}"
                chosen = [p for n, p in parsers.items() if n == wanted or verb == n[7:14]]
                known = {s for p in chosen for a in p._actions for s in a.option_strings}
                for option in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", rest):
                    if option not in known:
                        problems.append(f"{doc.name}: `ctxseg {verb}` has no {option}")
        if "_pred.mhd" in text:
            problems.append(f"{doc.name}: predict writes _pred.mha, not _pred.mhd")
    assert problems == []
    make_demo = re.search(r"ctxseg demo --out (\S+)", (REPO / "Makefile").read_text())
    demo_default = parsers["ctxseg demo"].get_default("out")
    assert make_demo is None or make_demo.group(1) == str(demo_default)


# ----------------------------------------------------------------------- the kill -9 loop


def wait_until_training(run: Path, process: subprocess.Popen, log: Path) -> None:
    """Wait until ``process`` holds the run folder's lock: its training has begun."""

    def started() -> bool:
        with contextlib.suppress(OSError, ValueError):
            return json.loads((run / ".lock").read_text())["pid"] == process.pid
        return False

    wait_for(started, process, "its lock", log)


def wait_to_kill(
    run: Path, process: subprocess.Popen, log: Path, nth_write: int | None, delay: float
) -> None:
    """After training began, wait until the ``nth_write``-th checkpoint write of this process
    is under way, or (``nth_write`` None) ``delay`` seconds; return early if it ends."""
    seen: set[str] = set()

    def writing() -> bool:
        seen.update(p.name for p in run.glob(".checkpoint_*.tmp"))
        return len(seen) >= (nth_write or 0) and any(run.glob(".checkpoint_*.tmp"))

    with contextlib.suppress(AssertionError):  # the process may finish first
        wait_until_training(run, process, log)
        until = time.monotonic() + delay
        ready = writing if nth_write else lambda: time.monotonic() > until
        wait_for(ready, process, "the moment to kill", log)


@pytest.mark.slow
def test_kill_9_loop_resumes_bit_exact(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    """Training processes killed with SIGKILL at random moments - about half of the kills while
    a checkpoint is being written - and resumed with ``--resume`` until they finish; every run
    is then compared bit for bit with the uninterrupted one.

    ``CTXSEG_KILL_RUNS`` (default 8) runs of the 2-epoch tiny experiment, 1-3 kills each: either
    while the 1st or 2nd checkpoint write of the process is under way, or at a time drawn
    uniformly over the training time of an uninterrupted process (measured first). The figures
    are printed (``-s``) and, with ``CTXSEG_KILL_REPORT=FILE``, written there as JSON
    (docs/reliability.md).
    """
    config_path, reference = tiny
    runs = int(os.environ.get("CTXSEG_KILL_RUNS", "8"))
    rng = random.Random(12)
    figures: dict[str, object] = {
        "runs": runs,
        "kills": 0,
        "kills_while_writing_a_checkpoint": 0,
        "resumes": 0,
        "resumes_from_a_checkpoint": 0,
        "stale_locks_taken_over": 0,
        "bit_exact_runs": 0,
        "leftover_hidden_files": 0,
    }
    started = time.monotonic()
    calibration, log = tmp_path / "calibration", tmp_path / "calibration.log"
    process = start_train(config_path, calibration, log)
    wait_until_training(calibration, process, log)
    begun = time.monotonic()
    assert process.wait(timeout=300) == 0, log.read_text()
    training_s = time.monotonic() - begun
    assert_same_run(calibration, reference)
    figures["training_seconds_uninterrupted"] = round(training_s, 1)
    for index in range(runs):
        run, log = tmp_path / f"run{index}", tmp_path / f"run{index}.log"
        kills_left = rng.randint(1, 3)
        flags: tuple[str, ...] = ()
        while True:
            process = start_train(config_path, run, log, *flags)
            try:
                nth_write = rng.choice([1, 2]) if rng.random() < 0.5 else None
                if kills_left:
                    wait_to_kill(run, process, log, nth_write, rng.uniform(0.0, training_s))
                if kills_left and process.poll() is None:
                    process.kill()
                    process.wait()
                    figures["kills"] += 1
                    # Counted by what the kill left: a partial checkpoint (removed at restart).
                    partial = any(run.glob(".checkpoint_*.tmp"))
                    figures["kills_while_writing_a_checkpoint"] += partial
                    kills_left -= 1
                    figures["resumes"] += 1
                    figures["resumes_from_a_checkpoint"] += (run / "checkpoint_last.pt").is_file()
                    flags = ("--resume",)
                    continue
                assert process.wait(timeout=300) == 0, log.read_text()
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
                figures["stale_locks_taken_over"] += log.read_text().count("stale lock")
            break
        assert_same_run(run, reference)
        figures["bit_exact_runs"] += 1
        figures["leftover_hidden_files"] += len([p for p in run.iterdir() if p.name[0] == "."])
    figures["seconds"] = round(time.monotonic() - started)
    print(json.dumps(figures))
    if os.environ.get("CTXSEG_KILL_REPORT"):
        Path(os.environ["CTXSEG_KILL_REPORT"]).write_text(json.dumps(figures, indent=1) + "\n")
    assert figures["bit_exact_runs"] == runs and figures["leftover_hidden_files"] == 0
