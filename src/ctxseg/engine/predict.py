"""``ctxseg predict``: label volumes for raw scans, in each scan's own geometry.

A checkpoint carries the preprocessing parameters of the store it was trained on
(``dataset.json["preprocessing"]``). Each input volume goes through the same preprocessing as
training data (:func:`ctxseg.data.preprocess.preprocess_image`: resampling, intensity
normalisation, crop / pad), the network labels its slices one by one (whole slices, no ROI:
inference sees only the image, SPEC §1), and :func:`ctxseg.data.preprocess.restore_label`
undoes the crop and the resampling, so the written label volume has the input's size, spacing,
origin and direction.

Output names mirror the inputs with ``_pred`` added, in a single-file format of the same
family: ``CaseNN.nii.gz`` -> ``CaseNN_pred.nii.gz``, ``CaseNN.nii`` -> ``CaseNN_pred.nii``,
``CaseNN.mhd`` / ``.mha`` -> ``CaseNN_pred.mha`` (MetaImage with the header inside, so the
file can be written atomically: a temporary file in the output folder, then a rename).
Given a folder, every volume directly in it is predicted, except label files named like the
layouts this project reads (``*_segmentation.*`` of PROMISE12, ``*_gt.*`` of ACDC) and earlier
predictions (a file named as the prediction of another volume of the folder).

Everything is checked before the model is loaded: the inputs, that no two inputs would get one
output name (``CaseNN.mhd`` and ``CaseNN.mha``), and that the output folder is a folder that can
be written.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from torch import nn

from ctxseg.engine.distributed import resolve_device
from ctxseg.engine.precision import FastPath, inference_fast_path
from ctxseg.errors import os_error_at

log = logging.getLogger(__name__)

INPUT_SUFFIXES = (".nii.gz", ".nii", ".mhd", ".mha")
OUTPUT_SUFFIX = {".nii.gz": ".nii.gz", ".nii": ".nii", ".mhd": ".mha", ".mha": ".mha"}
LABEL_FILE_ENDINGS = ("_segmentation", "_gt")


def _suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in INPUT_SUFFIXES if name.endswith(s)), None)


def output_name(path: str | Path) -> str:
    """The file name of the prediction for an input volume (see the module docstring).

    Raises:
        ValueError: not a supported volume suffix.
    """
    path = Path(path)
    suffix = _suffix(path)
    if suffix is None:
        raise ValueError(f"{path}: unsupported volume type (expected one of {INPUT_SUFFIXES})")
    return f"{path.name[: -len(suffix)]}_pred{OUTPUT_SUFFIX[suffix]}"


def find_inputs(path: str | Path) -> list[Path]:
    """The volumes to predict: ``path`` itself, or the volumes directly inside a folder.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: an unsupported file, or a folder without volumes.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    if path.is_file():
        output_name(path)  # validates the suffix
        return [path]
    volumes = [f for f in sorted(path.iterdir()) if f.is_file() and _suffix(f) is not None]
    predictions = {output_name(f) for f in volumes}
    found = []
    for file in volumes:
        suffix = _suffix(file)
        assert suffix is not None
        if file.name[: -len(suffix)].lower().endswith(LABEL_FILE_ENDINGS):
            log.info("skipping %s (a label file)", file.name)
            continue
        if file.name in predictions:  # e.g. an earlier run wrote its output into this folder
            log.info("skipping %s (the prediction of another volume here)", file.name)
            continue
        found.append(file)
    if not found:
        raise ValueError(f"input folder {path} holds no volume ({', '.join(INPUT_SUFFIXES)})")
    return found


def predict_volume(
    model: nn.Module,
    image: sitk.Image,
    preprocessing: dict[str, Any],
    device: str | torch.device | None = None,
    batch_size: int = 16,
    fast: FastPath | None = None,
) -> sitk.Image:
    """Label one raw volume with a network, in the volume's own geometry.

    Args:
        model: segmentation network returning logits, in eval mode.
        image: the raw scan (any spacing, origin, direction).
        preprocessing: the store's preprocessing parameters (``checkpoint["preprocessing"]``).
        device: where to run the network; default the model's device.
        batch_size: slices per forward pass.
        fast: the fast path (bf16 / channels-last) to run the network on; default fp32.

    Returns:
        A uint8 label image with ``image``'s size, spacing, origin and direction.
    """
    from ctxseg.data.preprocess import preprocess_image, restore_label
    from ctxseg.engine.inference import predict_labels

    array, geometry = preprocess_image(image, preprocessing)  # (Z, H, W) float32
    label = predict_labels(
        model,
        np.ascontiguousarray(array[:, None]),
        batch_size,
        device,
        amp=fast is not None and fast.bf16,
        channels_last=fast is not None and fast.channels_last,
    )
    return restore_label(np.asarray(label, dtype=np.uint8), geometry)  # label (Z, H, W)


def check_outputs(inputs: list[Path], output: str | Path) -> list[Path]:
    """The output file of every input, after checking they can all be written.

    Raises:
        ValueError: ``output`` is a file; two inputs would get the same output name; an output
            would replace one of the inputs.
        OSError: the output folder cannot be created or written (it names the folder).
    """
    out_dir = Path(output)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(
            f"--output {out_dir} is a file, not a folder: give a folder for the labels"
        )
    targets = [out_dir / output_name(path) for path in inputs]
    by_target: dict[Path, list[Path]] = {}
    for path, target in zip(inputs, targets, strict=True):
        by_target.setdefault(target, []).append(path)
    for target, sources in by_target.items():
        if len(sources) > 1:
            names = " and ".join(str(p) for p in sources)
            raise ValueError(
                f"{names} would both be written to {target}; rename one or predict them into "
                "different folders"
            )
    sources = {p.resolve() for p in inputs}
    clash = [t for t in targets if t.resolve() in sources]
    if clash:
        raise ValueError(f"{clash[0]} is an input and would be overwritten by a prediction")
    out_dir.mkdir(parents=True, exist_ok=True)
    try:  # a read-only or full folder fails here, before minutes of inference
        with tempfile.TemporaryFile(dir=out_dir) as probe:
            probe.write(b"0")
            probe.flush()
    except OSError as err:
        raise os_error_at(err, out_dir, " (the output folder cannot be written)") from err
    return targets


def _write_atomic(image: sitk.Image, path: Path) -> None:
    """Write ``image`` to a temporary file beside ``path`` (same suffix), then rename it.

    Raises:
        OSError: naming ``path`` (ITK reports a failed write as a ``RuntimeError``); the
            temporary is removed and an earlier file at ``path`` is kept.
    """
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        try:
            sitk.WriteImage(image, str(tmp), useCompression=True)
        except RuntimeError as err:
            lines = [line for line in str(err).splitlines() if line.strip()]
            reason = lines[-1].strip() if lines else "unknown reason"
            raise OSError(None, f"cannot be written ({reason})", str(path)) from err
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # a second error must not hide the first
            tmp.unlink(missing_ok=True)
        raise


def predict(
    checkpoint: str | Path,
    input: str | Path,  # noqa: A002  (the CLI's name for it)
    output: str | Path,
    device: str | torch.device | None = None,
    batch_size: int = 16,
    amp: str | None = None,
) -> list[Path]:
    """Predict label volumes for a volume or a folder of volumes.

    Args:
        checkpoint: a ``checkpoint_*.pt`` of a training run.
        input: a ``.nii.gz`` / ``.nii`` / ``.mhd`` / ``.mha`` volume or a folder of them.
        output: the folder for the label volumes (created if needed); existing predictions of
            the same name are replaced, each atomically.
        device: ``"auto"`` / ``None`` (CUDA if available), ``"cpu"``, ``"cuda"``.
        batch_size: slices per forward pass.
        amp: ``auto | bf16 | off``; default the training run's ``train.amp`` (the path that
            validated the checkpoint, :func:`ctxseg.engine.precision.inference_fast_path`).

    Returns:
        The written files, in input order.

    Raises:
        FileNotFoundError: missing checkpoint or input.
        ValueError: a checkpoint without preprocessing parameters, an unsupported or unreadable
            input (the message names the file); ``output`` is a file; two inputs with one
            output name (checked before the model is loaded).
        OSError: the output folder cannot be written (names it).
    """
    from ctxseg.data.io import read_volume
    from ctxseg.engine.checkpoint import load_model

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    inputs = find_inputs(input)
    targets = check_outputs(inputs, output)
    dev = resolve_device(device)
    model, ckpt = load_model(checkpoint, dev)
    fast = inference_fast_path(model, ckpt, dev, amp)
    log.info("predicting on %s: %s", dev, fast.reason)
    params = ckpt.get("preprocessing")
    if not params:
        raise ValueError(f"{checkpoint}: holds no preprocessing parameters; cannot map raw scans")
    written = []
    for path, target in zip(inputs, targets, strict=True):
        start = time.perf_counter()
        image = read_volume(path)
        label = predict_volume(model, image, params, dev, batch_size, fast)
        _write_atomic(label, target)
        counts = np.bincount(
            sitk.GetArrayViewFromImage(label).ravel(), minlength=ckpt["num_classes"]
        )
        log.info(
            "%s -> %s (%.1f s, voxels per class %s)",
            path.name,
            target,
            time.perf_counter() - start,
            counts.tolist(),
        )
        written.append(target)
    return written


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ctxseg predict --checkpoint FILE --input PATH --output DIR``."""
    parser = subparsers.add_parser(
        "predict",
        help="label raw volumes (.nii.gz, .nii, .mhd, .mha) with a trained checkpoint",
        description=(
            "Label raw scans with a trained checkpoint, in each scan's own size, spacing, origin "
            "and direction. CaseNN.nii.gz -> CaseNN_pred.nii.gz, CaseNN.nii -> CaseNN_pred.nii, "
            "CaseNN.mhd or .mha -> CaseNN_pred.mha. A folder: every volume in it, except label "
            "files (*_segmentation.*, *_gt.*) and earlier predictions (*_pred.*)."
        ),
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        metavar="FILE",
        help="a checkpoint of a training run (RUN_DIR/checkpoint_best.pt or checkpoint_last.pt)",
    )
    parser.add_argument(
        "--input", required=True, metavar="PATH", help="a volume, or a folder of volumes"
    )
    parser.add_argument(
        "--output",
        required=True,
        metavar="DIR",
        help="folder for the label volumes (created; predictions of the same name are replaced)",
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    parser.add_argument(
        "--batch-size", type=int, default=16, help="slices per forward pass (default: 16)"
    )
    parser.add_argument(
        "--amp",
        choices=("auto", "bf16", "off"),
        default=None,
        help="bf16 autocast: auto | bf16 | off (default: the training run's train.amp)",
    )
    parser.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    paths = predict(
        args.checkpoint, args.input, args.output, args.device, args.batch_size, amp=args.amp
    )
    for path in paths:
        print(path)
    return 0
