"""The ``ctxseg prepare DATASET`` verb: raw scans (or phantoms) -> a prepared store."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

from ctxseg.data.store import PreparedStore

DESCRIPTION = (
    "Turn raw scans (or built-in phantoms) into a prepared store: every slice resampled, "
    "normalised and cropped, in memory-mappable arrays with the splits and the geometry to map "
    "predictions back. The store is built in a temporary folder and renamed into place, so a "
    "failure never leaves half a store and --overwrite keeps the old one until the new is whole."
)


def _common(parser: argparse.ArgumentParser, raw: bool) -> None:
    if raw:
        parser.add_argument("--raw", type=Path, required=True, help="raw dataset folder")
    parser.add_argument("--out", type=Path, required=True, help="prepared store folder to create")
    parser.add_argument("--seed", type=int, default=0, help="split seed (default: 0)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing store (atomically)"
    )


def _spacing_value(text: str) -> float | None:
    """One ``--spacing`` value: millimetres, or ``keep`` for the source spacing of that axis."""
    if text.lower() == "keep":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected mm or 'keep', got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"spacing must be a positive number, got {text!r}")
    return value


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``prepare`` and its dataset subcommands to the ``ctxseg`` command."""
    prepare = subparsers.add_parser(
        "prepare", help="prepare a dataset into a slice store", description=DESCRIPTION
    )
    datasets = prepare.add_subparsers(dest="dataset", required=True, metavar="DATASET")

    p = datasets.add_parser("promise12", help="PROMISE12 CaseNN.mhd + CaseNN_segmentation.mhd")
    _common(p, raw=True)
    p.add_argument("--size", type=int, default=128, help="slice size in pixels (default: 128)")
    p.add_argument(
        "--spacing", type=float, default=1.0, help="isotropic resampling in mm (default: 1)"
    )
    p.set_defaults(func=_run_promise12)

    p = datasets.add_parser("acdc", help="ACDC, official NIfTI or SSL4MIS HDF5 layout")
    _common(p, raw=True)
    p.add_argument("--size", type=int, default=160, help="slice size in pixels (default: 160)")
    p.set_defaults(func=_run_acdc)

    p = datasets.add_parser("nnunet", help="nnU-Net raw layout (DatasetXXX_Name)")
    _common(p, raw=True)
    p.add_argument(
        "--size",
        type=int,
        default=None,
        help="slice size in pixels (default: the median in-plane size, rounded up to 32)",
    )
    p.add_argument(
        "--spacing",
        type=_spacing_value,
        nargs=3,
        metavar=("Z", "Y", "X"),
        default=None,
        help="resample to this spacing in mm, 'keep' for an axis kept as it is "
        "(default: no resampling)",
    )
    p.add_argument("--channel", type=int, default=0, help="input channel to use (default: 0)")
    p.set_defaults(func=_run_nnunet)

    for kind in ("prostate", "cardiac"):
        p = datasets.add_parser(f"phantom-{kind}", help=f"synthetic {kind} MR volumes")
        p.add_argument("--out", type=Path, required=True, help="prepared store folder to create")
        p.add_argument(
            "--cases", type=int, default=None, help="number of cases (default: built-in)"
        )
        p.add_argument("--seed", type=int, default=0, help="phantom and split seed (default: 0)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing store")
        p.set_defaults(func=_run_phantom, kind=kind)


def _report(store: PreparedStore) -> int:
    counts = ", ".join(
        f"{name} {len(store.case_ids(name))} cases / {store.indices(name).size} slices"
        for name in ("train", "val", "test")
    )
    print(f"{store.root}: {store.image_size[0]}x{store.image_size[1]} slices; {counts}")
    note = store.meta.get("split_note") or store.splits.get("note")
    if note:
        print(f"split: {note}")
    return 0


def _run_promise12(args: argparse.Namespace) -> int:
    from ctxseg.data.promise12 import prepare_promise12

    return _report(
        prepare_promise12(
            args.raw,
            args.out,
            seed=args.seed,
            overwrite=args.overwrite,
            size=args.size,
            spacing=args.spacing,
        )  # fmt: skip
    )


def _run_acdc(args: argparse.Namespace) -> int:
    from ctxseg.data.acdc import prepare_acdc

    return _report(
        prepare_acdc(args.raw, args.out, seed=args.seed, overwrite=args.overwrite, size=args.size)
    )


def _run_nnunet(args: argparse.Namespace) -> int:
    from ctxseg.data.nnunet import prepare_nnunet

    return _report(
        prepare_nnunet(
            args.raw,
            args.out,
            seed=args.seed,
            overwrite=args.overwrite,
            size=args.size,
            spacing=None if args.spacing is None else tuple(args.spacing),
            channel=args.channel,
        )  # fmt: skip
    )


def _run_phantom(args: argparse.Namespace) -> int:
    from ctxseg.data.phantoms import prepare_phantom

    kwargs = {"seed": args.seed}
    if args.cases is not None:
        kwargs["cases"] = args.cases
    if "overwrite" in inspect.signature(prepare_phantom).parameters:
        kwargs["overwrite"] = args.overwrite
    elif args.out.exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} exists (pass --overwrite to replace it)")
    return _report(prepare_phantom(args.kind, args.out, **kwargs))
