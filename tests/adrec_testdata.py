"""Where tests find the shared real datasets (importable as ``adrec_testdata`` from any test module)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

__all__ = ["REPO_ROOT", "data_dir", "require_dataset"]


def data_dir() -> Path:
    """The shared real datasets: ``$ADREC_DATA_DIR``, default ``../shared/data`` from the repository root."""
    return Path(os.environ.get("ADREC_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


def require_dataset(name: str) -> Path:
    """The folder of one shared dataset, or skip the test saying where it was looked for."""
    path = data_dir() / name
    if not path.is_dir():
        pytest.skip(f"dataset {name!r} not found at {path}; set ADREC_DATA_DIR to the folder holding it")
    return path
