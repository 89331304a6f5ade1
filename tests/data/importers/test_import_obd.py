"""Open Bandit Dataset: logged impressions with position and propensity, users keyed by their features."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from adrec.data.importers import run_import
from adrec.data.importers.obd import user_key
from adrec.data.schema import EventBatch, EventType
from adrec.exceptions import ImportFormatError, RowError
from adrec.store import Store

ITEM_CONTEXT = ",item_id,item_feature_0,item_feature_1,item_feature_2,item_feature_3\n"
LOG_HEADER = (
    ",timestamp,item_id,position,click,propensity_score,user_feature_0,user_feature_1,user_feature_2,"
    "user_feature_3,user-item_affinity_0,user-item_affinity_1\n"
)


def _log_row(index: int, item: int, position: int, click: int, users: str = "a,b,c,d") -> str:
    return f"{index},2019-11-24 00:0{index}:00.5+00:00,{item},{position},{click},0.5,{users},0.0,1.0\n"


def _small(write_files: Callable[..., Path], log: str) -> Path:
    items = ITEM_CONTEXT + "0,0,-0.5,h1,h2,h3\n1,1,0.7,h4,h2,h3\n"
    return write_files("obd", {"random/men/item_context.csv": items, "random/men/men.csv": LOG_HEADER + log})


def test_small_log_maps_rows_to_events(
    write_files: Callable[..., Path], store: Store, stored_events: Callable[[Store], EventBatch]
) -> None:
    root = _small(write_files, _log_row(0, 1, 2, 0) + _log_row(1, 0, 3, 1) + _log_row(2, 1, 1, 0, "a,b,c,e"))
    report = run_import("obd", root, store, progress=False)
    assert (report.users, report.ads, report.campaigns, report.events) == (2, 2, 1, 4)
    events = stored_events(store)
    by_id = {e: i for i, e in enumerate(events.event_id.tolist())}
    assert set(by_id) == {
        "obd:random:men:0:imp",
        "obd:random:men:1:imp",
        "obd:random:men:1:clk",
        "obd:random:men:2:imp",
    }
    click = by_id["obd:random:men:1:clk"]
    assert events.type[click] == EventType.CLICK
    assert (events.placement[click], events.propensity[click], events.ad_id[click]) == ("3", 0.5, "obd:men:0")
    assert events.user_id[click] == user_key(["a", "b", "c", "d"])
    assert store.get_user(user_key(["a", "b", "c", "e"])).attrs["user_feature_3"] == "e"
    ad = store.get_ad("obd:men:1")
    assert (ad.campaign_id, ad.category) == ("obd:men", "h4")
    assert ad.body == "item_feature_0=0.7;item_feature_1=h4;item_feature_2=h2;item_feature_3=h3"


@pytest.mark.parametrize("sub", ["", "random", "random/men"])
def test_root_policy_or_campaign_folder_is_accepted(write_files: Callable[..., Path], store: Store, sub: str) -> None:
    root = _small(write_files, _log_row(0, 1, 2, 0))
    report = run_import("obd", root / sub, store, progress=False)
    assert [f.path.name for f in report.files] == ["item_context.csv", "men.csv"]
    assert store.count_events() == 1


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ("0,2019-11-24 00:00:00+00:00,1,2,0,0.0,a,b,c,d,0,0\n", "propensity_score"),
        ("0,yesterday,1,2,0,0.5,a,b,c,d,0,0\n", "timestamp"),
        ("0,2019-11-24 00:00:00+00:00,1,2,2,0.5,a,b,c,d,0,0\n", "click"),
        ("0,2019-11-24 00:00:00+00:00,1,2,0,0.5,a,,c,d,0,0\n", "user_feature_1"),
    ],
)
def test_bad_log_row_is_located(write_files: Callable[..., Path], store: Store, row: str, field: str) -> None:
    root = _small(write_files, _log_row(5, 1, 2, 0) + row)
    with pytest.raises(RowError, match=rf"men\.csv:3: {field}: "):
        run_import("obd", root, store, progress=False)
    assert store.count_events() == 0
    assert store.stats().ads == 2  # item_context.csv came first


def test_missing_log_is_named(write_files: Callable[..., Path], store: Store) -> None:
    root = write_files("obd", {"random/men/item_context.csv": ITEM_CONTEXT})
    with pytest.raises(ImportFormatError, match=r"men\.csv is missing"):
        run_import("obd", root, store, progress=False)


def test_real_random_policy(
    real_dataset: Callable[[str], Path], store: Store, stored_events: Callable[[Store], EventBatch]
) -> None:
    root = real_dataset("open_bandit_dataset_random")
    report = run_import("obd", root, store, progress=False)
    assert [(f.path.parent.name, f.path.name, f.rows_imported) for f in report.files] == [
        ("men", "item_context.csv", 34),
        ("men", "men.csv", 10_000),
        ("women", "item_context.csv", 46),
        ("women", "women.csv", 10_000),
    ]
    stats = store.stats()
    assert (stats.ads, stats.campaigns) == (34 + 46, 2)
    assert stats.events["impression"] == 20_000
    assert stats.events["click"] == 46 + 46  # PROVENANCE: 46 clicks in each campaign
    events = stored_events(store)
    for campaign, n_items, positions, n_users in (
        ("men", 34, [3284, 3388, 3328], 230),
        ("women", 46, [3329, 3374, 3297], 205),
    ):
        imps = events.take(
            np.char.startswith(events.event_id.astype(str), f"obd:random:{campaign}:") & (events.type == 0)
        )
        assert np.allclose(imps.propensity, 1 / n_items)
        assert [int((imps.placement == str(p)).sum()) for p in (1, 2, 3)] == positions
        assert len(set(imps.user_id)) == n_users  # PROVENANCE: distinct user-feature tuples
    with (root / "random" / "men" / "men.csv").open() as f:
        tuples = {tuple(r[f"user_feature_{k}"] for k in range(4)) for r in csv.DictReader(f)}
    assert {user_key(list(t)) for t in tuples} <= set(events.user_id)
