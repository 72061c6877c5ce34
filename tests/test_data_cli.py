"""The ``ctxseg prepare`` verb: argument wiring of every subcommand and error reporting."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from ctxseg.cli import build_parser, main


@pytest.mark.parametrize("kind", ["prostate", "cardiac"])
def test_phantom_subcommands_call_prepare_phantom(monkeypatch, tmp_path, capsys, kind):
    calls = []

    class FakeStore:
        root = tmp_path / "out"
        image_size = (8, 8)
        meta = {"split_note": "no split lists: a seeded random split by patient (seed 5)"}
        splits = {}

        def case_ids(self, split):
            return ["a"] if split == "train" else []

        def indices(self, split):
            return np.arange(2) if split == "train" else np.arange(0)

    def prepare_phantom(kind, out, cases=None, seed=0, overwrite=False):
        calls.append((kind, out, cases, seed, overwrite))
        return FakeStore()

    fake = types.ModuleType("ctxseg.data.phantoms")
    fake.prepare_phantom = prepare_phantom
    monkeypatch.setitem(sys.modules, "ctxseg.data.phantoms", fake)
    argv = ["prepare", f"phantom-{kind}", "--out", str(tmp_path / "out"), "--cases", "3"]
    assert main([*argv, "--seed", "5", "--overwrite"]) == 0
    assert calls == [(kind, tmp_path / "out", 3, 5, True)]
    printed = capsys.readouterr().out
    assert "train 1 cases / 2 slices" in printed
    assert "split: no split lists: a seeded random split by patient (seed 5)" in printed


def test_parser_options():
    parser = build_parser()
    args = parser.parse_args(["prepare", "acdc", "--raw", "r", "--out", "o"])
    assert (args.dataset, args.size, args.seed, args.overwrite) == ("acdc", 160, 0, False)
    args = parser.parse_args(["prepare", "nnunet", "--raw", "r", "--out", "o", "--channel", "1"])
    assert (args.size, args.channel) == (None, 1)
    args = parser.parse_args(["prepare", "promise12", "--raw", "r", "--out", "o"])
    assert (args.size, args.spacing) == (128, 1.0)
    with pytest.raises(SystemExit):
        parser.parse_args(["prepare", "promise12", "--out", "o"])  # --raw is required
    nnunet = ["prepare", "nnunet", "--raw", "r", "--out", "o"]
    assert parser.parse_args(nnunet).spacing is None
    assert parser.parse_args([*nnunet, "--spacing", "keep", "1.5", "1"]).spacing == [None, 1.5, 1]
    for bad in (["0", "1", "1"], ["1", "1"], ["x", "1", "1"], ["1", "1", ".inf"]):
        with pytest.raises(SystemExit):
            parser.parse_args([*nnunet, "--spacing", *bad])


def test_nnunet_spacing_reaches_the_preparer(monkeypatch, tmp_path):
    """``prepare nnunet --spacing Z Y X`` (documented in docs/data-format.md) is passed on."""
    calls = []

    def prepare_nnunet(raw, out, **kwargs):
        calls.append(kwargs)
        raise ValueError("stop here")

    fake = types.ModuleType("ctxseg.data.nnunet")
    fake.prepare_nnunet = prepare_nnunet
    monkeypatch.setitem(sys.modules, "ctxseg.data.nnunet", fake)
    argv = [
        "prepare",
        "nnunet",
        "--raw",
        "r",
        "--out",
        str(tmp_path),
        "--spacing",
        "keep",
        "2",
        "2",
    ]
    assert main(argv) == 2
    assert calls[0]["spacing"] == (None, 2.0, 2.0) and calls[0]["size"] is None


def test_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(["prepare", "acdc", "--raw", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ctxseg prepare: error:") and "no ACDC data found" in err
    assert "\n" not in err
