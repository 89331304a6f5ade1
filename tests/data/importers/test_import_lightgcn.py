"""LightGCN train/test folders (and the LightGCN-PyTorch Last.fm layout): pairs become CLICK events whose
placement keeps the split."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from adrec.data.importers import run_import
from adrec.data.importers.lightgcn import BASE_TS, TEST_OFFSET
from adrec.data.schema import EventBatch, EventType
from adrec.exceptions import ImportFormatError
from adrec.store import Store


def _split_counts(events: EventBatch) -> dict[str, int]:
    names, counts = np.unique(events.placement.astype(str), return_counts=True)
    return dict(zip(names.tolist(), counts.tolist(), strict=True))


def test_small_split_maps_users_items_and_split(
    write_files: Callable[..., Path], store: Store, stored_events: Callable[[Store], EventBatch]
) -> None:
    folder = write_files(
        "tiny_ds",
        {
            "train.txt": "0 0 1 2\n1 2 \n2\n",
            "test.txt": "0 3\n1 0\n",
            "user_list.txt": "org_id remap_id\n343 0\n5258 1\n77 2\n",
            "item_list.txt": "org_id remap_id\n8975 0\n9190 1\n1 2\n2 3\n",
        },
    )
    report = run_import("lightgcn", folder, store, progress=False)
    assert [(f.path.name, f.rows_imported) for f in report.files] == [
        ("user_list.txt", 3),
        ("item_list.txt", 4),
        ("train.txt", 3),
        ("test.txt", 2),
    ]
    assert (report.users, report.ads, report.events) == (3, 4, 6)
    assert store.get_user("tiny_ds:1").attrs == {"org_id": "5258"}
    assert store.get_ad("tiny_ds:0").title == "8975"
    assert store.get_ad("tiny_ds:0").campaign_id == "tiny_ds"
    events = stored_events(store)
    assert set(events.type.tolist()) == {int(EventType.CLICK)}
    assert _split_counts(events) == {"train": 4, "test": 2}
    assert "tiny_ds:test:1:0" in set(events.event_id) and "tiny_ds:train:0:2" in set(events.event_id)
    train_ts = events.ts[events.placement == "train"]
    test_ts = events.ts[events.placement == "test"]
    assert sorted(set(train_ts.tolist())) == [BASE_TS + 1, BASE_TS + 2]  # line numbers of lines with items
    assert test_ts.min() > train_ts.max()
    assert sorted(set(test_ts.tolist())) == [BASE_TS + TEST_OFFSET + 1, BASE_TS + TEST_OFFSET + 2]


def test_without_list_files_users_and_items_come_from_the_pairs(write_files: Callable[..., Path], store: Store) -> None:
    folder = write_files("plain", {"train.txt": "0 5 6\n1 6\n", "test.txt": "0 7\n2 5\n"})
    report = run_import("lightgcn", folder, store, progress=False)
    assert (report.users, report.ads, report.events) == (3, 3, 5)
    assert store.get_ad("plain:7").campaign_id == "plain"


def test_lastfm_layout_with_weights(
    write_files: Callable[..., Path], store: Store, stored_events: Callable[[Store], EventBatch]
) -> None:
    folder = write_files("lfm", {"data1.txt": "1\t2\t993\r\n1\t3\t3.2466e+05\r\n", "test1.txt": "2\t2\t10\r\n"})
    report = run_import("lightgcn", folder, store, progress=False)
    assert (report.users, report.ads, report.events) == (2, 2, 3)
    events = stored_events(store)
    weights = dict(zip(events.event_id.tolist(), events.value.tolist(), strict=True))
    assert weights == {"lfm:train:1:2": 993.0, "lfm:train:1:3": 324660.0, "lfm:test:2:2": 10.0}


def test_bad_item_is_located(write_files: Callable[..., Path], store: Store) -> None:
    folder = write_files("bad", {"train.txt": "0 1 2\n1 2 x3\n", "test.txt": "0 3\n"})
    with pytest.raises(Exception, match=r"train\.txt:2: items\[1\]: expected an integer, got 'x3'"):
        run_import("lightgcn", folder, store, progress=False)
    assert store.count_events() == 0


def test_folder_without_split_files_is_a_format_error(write_files: Callable[..., Path], store: Store) -> None:
    folder = write_files("none", {"train.txt": "0 1\n"})
    with pytest.raises(ImportFormatError, match=r"neither train\.txt\+test\.txt nor data1\.txt\+test1\.txt"):
        run_import("lightgcn", folder, store, progress=False)


def _lastfm_expected(folder: Path) -> tuple[set[str], set[str], int, int]:
    users: set[str] = set()
    items: set[str] = set()
    n = {}
    for name in ("data1.txt", "test1.txt"):
        rows = [line.split("\t")[:2] for line in (folder / name).read_text().splitlines() if line.strip()]
        users |= {u for u, _ in rows}
        items |= {i for _, i in rows}
        n[name] = len(rows)
    return users, items, n["data1.txt"], n["test1.txt"]


def test_real_lastfm(real_dataset: Callable[[str], Path], store: Store) -> None:
    folder = real_dataset("lastfm_lightgcn_pytorch")
    users, items, n_train, n_test = _lastfm_expected(folder)
    assert (n_train, n_test) == (42_135, 10_533)  # PROVENANCE
    report = run_import("lightgcn", folder, store, progress=False)
    stats = store.stats()
    assert (stats.users, stats.ads) == (len(users), len(items))
    assert stats.events == {"impression": 0, "click": n_train + n_test, "conversion": 0}
    assert [f.events for f in report.files] == [n_train, n_test]
    assert report.bad_rows == 0


@pytest.mark.slow
def test_real_gowalla(real_dataset: Callable[[str], Path], store: Store) -> None:
    folder = real_dataset("gowalla_lightgcn")
    report = run_import("lightgcn", folder, store, progress=False)
    stats = store.stats()
    assert (stats.users, stats.ads) == (29_858, 40_981)
    assert (report.users, report.ads) == (29_858, 40_981)  # each written once
    assert [(f.path.name, f.events) for f in report.files[-2:]] == [("train.txt", 810_128), ("test.txt", 217_242)]
    assert stats.events["click"] == 810_128 + 217_242
    first_test_user = next(store.iter_events(user_id="gowalla_lightgcn:0", since=BASE_TS + TEST_OFFSET))
    assert set(first_test_user.placement) == {"test"}
