"""The runner's guarantees, on small hand-written files: errors name file, line and field; a bad file writes
nothing by default; ``skip_bad`` imports the rest and counts; writes are chunked; the public API's errors."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adrec.data.importers import IMPORTERS, run_import
from adrec.data.importers import base as importer_base
from adrec.data.schema import EventBatch, EventType
from adrec.exceptions import AdrecError, ImportFormatError, RowError
from adrec.store import Store

FLAGS = "|".join(["0"] * 18)
USERS = "1|30|F|writer|12345\n2|40|M|other|54321\n"
ITEMS = f"10|A (1990)|||http://x.test/a|1|{FLAGS}\n11|B (1991)|||http://x.test/b|1|{FLAGS}\n"


def _ml(write_files: Callable[..., Path], ratings: str, **other: str) -> Path:
    files = {"u.user": other.get("users", USERS), "u.item": other.get("items", ITEMS), "u.data": ratings}
    return write_files("ml", files)


GOOD = "1\t10\t5\t100\n1\t11\t2\t200\n2\t10\t4\t300\n2\t11\t1\t400\n"


def test_bad_row_names_file_line_and_field(write_files: Callable[..., Path], store: Store) -> None:
    folder = _ml(write_files, "1\t10\t5\t100\n1\t11\t2\t200\n2\t10\tfive\t300\n")
    with pytest.raises(RowError) as caught:
        run_import("movielens", folder, store, progress=False)
    err = caught.value
    path = str(folder / "u.data")
    assert str(err).startswith(f"{path}:3: rating: ")
    assert "'five'" in str(err)
    assert (err.path, err.line, err.field) == (path, 3, "rating")


@pytest.mark.parametrize(
    ("files", "where", "field"),
    [
        ({"users": "1|30|F|writer|12345\n2|130|M|other|54321\n"}, "u.user:2", "age"),
        ({"users": "1|30|X|writer|12345\n"}, "u.user:1", "gender"),
        ({"users": "1|30|F|writer\n"}, "u.user:1", "row"),
        ({"items": ITEMS.replace("|1|0|", "|2|0|", 1)}, "u.item:1", "genre[unknown]"),
        ({"items": f"12|{'x' * 301}|||http://x.test/c|1|{FLAGS}\n"}, "u.item:1", "ad.title"),
        ({}, "u.data:2", "timestamp"),
    ],
)
def test_errors_of_each_kind_are_located(
    write_files: Callable[..., Path], store: Store, files: dict[str, str], where: str, field: str
) -> None:
    ratings = "1\t10\t5\t100\n1\t11\t2\t-5\n" if not files else GOOD
    folder = _ml(write_files, ratings, **files)
    with pytest.raises(RowError, match=re.escape(f"{where}: {field}: ")):
        run_import("movielens", folder, store, progress=False)


def test_default_writes_nothing_of_the_bad_file_and_keeps_earlier_files(
    write_files: Callable[..., Path], store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiny chunks: a single-pass importer would have written the first rows before meeting the bad last one.
    monkeypatch.setattr(importer_base, "CHUNK_RECORDS", 2)
    folder = _ml(write_files, GOOD + "2\t12\t9\t500\n")
    with pytest.raises(RowError) as caught:
        run_import("movielens", folder, store, progress=False)
    assert caught.value.line == 5
    assert "files imported before it: u.user, u.item" in "\n".join(caught.value.__notes__)
    assert store.count_events() == 0
    stats = store.stats()
    assert (stats.users, stats.ads) == (2, 2)


def test_skip_bad_imports_the_rest_and_counts(
    write_files: Callable[..., Path], store: Store, stored_events: Callable[[Store], EventBatch]
) -> None:
    ratings = "1\t10\t5\t100\n1\t11\t2\t200\nx\t10\t4\t300\n\n2\t10\t4\t300\n2\t11\t1\n"
    folder = _ml(write_files, ratings)
    report = run_import("movielens", folder, store, skip_bad=True, progress=False)
    data = report.files[-1]
    assert (data.rows_read, data.rows_imported, data.bad_rows) == (5, 3, 2)
    path = folder / "u.data"
    assert data.error_samples[0].startswith(f"{path}:3: user_id: ")
    assert data.error_samples[1].startswith(f"{path}:6: row: has 3 fields; expected 4")
    assert (report.rows_read, report.bad_rows) == (2 + 2 + 5, 2)
    events = stored_events(store)
    assert sorted(events.event_id) == sorted(
        ["ml-100k:imp:1:10", "ml-100k:clk:1:10", "ml-100k:imp:1:11", "ml-100k:imp:2:10", "ml-100k:clk:2:10"]
    )
    assert report.events == 5


def test_skip_bad_keeps_only_the_first_error_messages(write_files: Callable[..., Path], store: Store) -> None:
    folder = _ml(write_files, GOOD + "1\t10\t0\t1\n" * 25)
    report = run_import("movielens", folder, store, skip_bad=True, progress=False)
    assert report.files[-1].bad_rows == 25
    assert len(report.files[-1].error_samples) == importer_base.MAX_ERROR_SAMPLES


def test_blank_lines_crlf_and_latin1_are_read(write_files: Callable[..., Path], store: Store) -> None:
    items = f"10|Misérables, Les (1995)|||http://x.test/a|1|{FLAGS}\r\n\r\n"
    folder = write_files("ml", {"u.user": USERS, "u.data": "\n" + GOOD.replace("\n", "\r\n") + "\n\n"})
    write_files("ml", {"u.item": items}, encoding="latin-1")
    report = run_import("movielens", folder, store, progress=False)
    assert [f.rows_imported for f in report.files] == [2, 1, 4]
    assert store.get_ad("ml-100k:10").title == "Misérables, Les (1995)"


def test_undecodable_row_is_a_row_error(write_files: Callable[..., Path], store: Store) -> None:
    folder = write_files("ll", {"train.txt": "0 1 2\n", "test.txt": "0 3\n"})
    (folder / "test.txt").write_bytes(b"0 3\n1 \xff\xfe\n")
    with pytest.raises(RowError, match=r"test.txt:2: row: is not utf-8 text"):
        run_import("lightgcn", folder, store, progress=False)
    assert store.count_events() == 2  # train.txt was imported before


class _SpyStore:
    """Delegates to a real store and records the size of every event and user write."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.event_writes: list[int] = []
        self.user_writes: list[int] = []

    def append_events(self, events: EventBatch) -> Any:
        self.event_writes.append(len(events))
        return self._store.append_events(events)

    def upsert_users(self, users: list[Any]) -> int:
        self.user_writes.append(len(users))
        return self._store.upsert_users(users)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_writes_are_chunked_and_each_entity_written_once(
    write_files: Callable[..., Path], store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer_base, "CHUNK_RECORDS", 7)
    n_users = 23
    users = "org_id remap_id\n" + "".join(f"u{u} {u}\n" for u in range(n_users))
    items = "org_id remap_id\n" + "".join(f"i{i} {i}\n" for i in range(5))
    train = "".join(f"{u} {u % 5} {(u + 1) % 5}\n" for u in range(n_users))
    test = "".join(f"{u} {(u + 2) % 5}\n" for u in range(n_users))
    folder = write_files("ds", {"user_list.txt": users, "item_list.txt": items, "train.txt": train, "test.txt": test})
    spy = _SpyStore(store)
    report = run_import("lightgcn", folder, spy, progress=False)  # type: ignore[arg-type]
    assert max(spy.event_writes) <= 7 + 2  # a chunk is flushed once it holds 7 records; a row adds at most 2
    assert len(spy.event_writes) >= 3 * n_users // 9
    assert sum(spy.event_writes) == 3 * n_users
    assert sum(spy.user_writes) == n_users == report.users  # no user written twice across chunks or files
    assert report.ads == 5
    assert store.count_events() == 3 * n_users


def test_rejected_row_does_not_mark_its_entities_as_written(write_files: Callable[..., Path], store: Store) -> None:
    # DMR rows add advertiser, campaign and ad before the pid is checked: the bad first row must leave no trace,
    # so that the good second row for the same ad still writes it.
    good = ["0"] * 250 + ["7", "1", "1", "2", "3", "0", "2", "0", "0", "55", "66", "77", "88", "99", "0.5", "1", "1"]
    bad = [*good[:265], "2", "0"]
    folder = write_files("dmr", {"s.txt": ",".join(bad) + "\n" + ",".join(good) + "\n"})
    report = run_import("taobao-dmr", folder, store, skip_bad=True, progress=False)
    assert report.files[0].bad_rows == 1
    assert (report.advertisers, report.campaigns, report.ads, report.users) == (1, 1, 1, 1)
    assert store.get_ad("taobao-dmr:55").campaign_id == "taobao-dmr:77"
    assert store.count_events(type=EventType.CLICK) == 1


def test_unknown_format_lists_the_known_ones(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ImportFormatError) as caught:
        run_import("movielen", tmp_path, store, progress=False)
    assert isinstance(caught.value, AdrecError)
    for name in IMPORTERS:
        assert name in str(caught.value)


def test_missing_path_and_missing_file_are_named(
    write_files: Callable[..., Path], store: Store, tmp_path: Path
) -> None:
    with pytest.raises(ImportFormatError, match=rf"{tmp_path / 'nope'} does not exist; the movielens importer"):
        run_import("movielens", tmp_path / "nope", store, progress=False)
    folder = write_files("ml", {"u.user": USERS, "u.item": ITEMS})
    with pytest.raises(ImportFormatError, match=rf"{folder / 'u.data'} is missing; expected .*u\.data"):
        run_import("movielens", folder, store, progress=False)
    assert store.stats().users == 0  # nothing is written before every expected file is found


def test_wrong_header_is_a_format_error(write_files: Callable[..., Path], store: Store) -> None:
    folder = write_files("av", {"a.csv": "id,clicked,hour\n1,0,14102100\n"})
    with pytest.raises(ImportFormatError, match=r"a\.csv:1: header .* expected columns"):
        run_import("avazu", folder, store, progress=False)


def test_registry_has_one_line_descriptions() -> None:
    assert set(IMPORTERS) == {"movielens", "lightgcn", "obd", "taobao", "taobao-dmr", "criteo", "avazu"}
    for name, importer in IMPORTERS.items():
        assert importer.name == name
        assert importer.description and "\n" not in importer.description
        assert importer.expects


def test_progress_bar_goes_to_stderr(
    write_files: Callable[..., Path], store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _ml(write_files, GOOD)
    run_import("movielens", folder, store)
    out, err = capsys.readouterr()
    assert out == ""
    assert "u.data" in err
