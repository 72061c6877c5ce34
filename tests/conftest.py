"""Shared test settings: the real-data location and the opt-in slow tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """The real data sets: ``$CTXSEG_SHARED_DATA``, else ``<repo>/../shared/data``."""
    return Path(os.environ.get("CTXSEG_SHARED_DATA", REPO.parent / "shared" / "data"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: opt-in with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_root()
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (set CTXSEG_SHARED_DATA)")
    return root


@pytest.fixture(params=["numpy", "compiled"])
def distance_search(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each Hausdorff test twice: the NumPy path only, and with the compiled paths
    (``ctxseg.metrics._compiled``: slices and thick-slice volumes measured whole, far voxels
    of near-isotropic volumes searched; skipped, with the reason, without numba)."""
    from ctxseg.metrics import _compiled

    if request.param == "compiled" and not _compiled.INSTALLED:
        pytest.skip("numba not installed (pip install ctxseg[fast]): compiled search untested")
    monkeypatch.setattr(_compiled, "AVAILABLE", request.param == "compiled")
    return request.param
