"""Fixtures of the profile tests (shared data lives in profile_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adrec.store import Store, open_store


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """An empty store on every backend."""
    with open_store(store_url) as s:
        yield s


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """An empty SQLite store, for tests about the profile logic rather than the backend."""
    with open_store(f"sqlite:///{tmp_path}/profiles.db") as s:
        yield s
