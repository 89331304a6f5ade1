"""Fixtures of the importer tests: an empty SQLite store, the shared real datasets, small file writers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adrec.data.schema import EventBatch
from adrec.store import Store, open_store
from adrec_testdata import require_dataset


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """An empty SQLite store in the test's temporary folder."""
    with open_store(f"sqlite:///{tmp_path}/t.db") as s:
        yield s


@pytest.fixture(scope="session")
def real_dataset() -> Callable[[str], Path]:
    """``real_dataset(name)``: the folder of a shared real dataset (see :func:`adrec_testdata.require_dataset`:
    skipped when missing, failed under CI)."""
    return require_dataset


@pytest.fixture
def write_files(tmp_path: Path) -> Callable[..., Path]:
    """``write_files(folder, {relative path: text}, encoding="utf-8")``: write small files; return the folder."""

    def write(folder: str, files: dict[str, str], encoding: str = "utf-8") -> Path:
        base = tmp_path / folder
        for name, text in files.items():
            path = base / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text.encode(encoding))
        return base

    return write


@pytest.fixture(scope="session")
def stored_events() -> Callable[[Store], EventBatch]:
    """``stored_events(store)``: every stored event in one batch (ordered by time, then id)."""

    def read(store: Store) -> EventBatch:
        batches = list(store.iter_events())
        if not batches:
            return EventBatch(event_id=[], type=[], user_id=[], ad_id=[], ts=[])  # type: ignore[arg-type]
        return EventBatch.concat(batches)

    return read
