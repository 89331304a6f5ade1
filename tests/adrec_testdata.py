"""Where tests find the shared real datasets (importable as ``adrec_testdata`` from any test module).

Every test that reads one goes through :func:`require_dataset`: a missing dataset skips the test on a developer's
machine, and fails it under CI (``$CI`` set, as for PostgreSQL and Redis in ``conftest.py``), where a silent skip
would hide that the real-data tests did not run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

__all__ = ["REPO_ROOT", "data_dir", "require_dataset"]


def data_dir() -> Path:
    """The shared real datasets: ``$ADREC_DATA_DIR``, default ``../shared/data`` from the repository root."""
    return Path(os.environ.get("ADREC_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


def require_dataset(name: str, *files: str) -> Path:
    """The folder of the shared dataset ``name``, holding ``files`` (paths inside it) if any are named.

    When it is missing: ``pytest.skip`` saying where it was looked for, or ``pytest.fail`` under CI.
    """
    path = data_dir() / name
    if not path.is_dir():
        problem = f"dataset {name!r} not found at {path}"
    else:
        missing = [f for f in files if not (path / f).is_file()]
        if not missing:
            return path
        problem = f"dataset {name!r} at {path} lacks {', '.join(missing)}"
    message = f"{problem}; set ADREC_DATA_DIR to the folder holding it"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (under CI a missing dataset is a failure, not a skip)")
    pytest.skip(message)
