"""Taobao display-ad data: the raw three-table release (small fixture tables written here; no real copy is
available) and the DMR pre-joined sample (real)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from adrec.data.importers import run_import
from adrec.data.importers.taobao_dmr import BASE_TS, N_COLUMNS
from adrec.data.schema import EventBatch, EventType, Gender
from adrec.exceptions import ImportFormatError, RowError
from adrec.store import Store

PROFILE = (
    "userid,cms_segid,cms_group_id,final_gender_code,age_level,pvalue_level,shopping_level,occupation,"
    "new_user_class_level \n"  # the release's header really ends with a space
    "234,0,5,2,5,,3,0,3\n"
    "523,5,2,1,2,1,3,1,\n"
)
ADS = (
    "adgroup_id,cate_id,campaign_id,customer,brand,price\n"
    "63133,6406,83237,1,95471,170.0\n"
    "313401,6406,83237,1,NULL,199.0\n"
    "248909,392,27421,26,NULL,3.5\n"
)
SAMPLE = (
    "user,time_stamp,adgroup_id,pid,nonclk,clk\n"
    "581738,1494137644,63133,430548_1007,1,0\n"
    "234,1494550536,313401,430548_1007,0,1\n"
    "234,1494550536,313401,430548_1007,0,1\n"  # an exact repeat: stored once
    "523,1494245123,248909,430539_1007,1,0\n"
)


def _raw(write_files: Callable[..., Path], sample: str = SAMPLE, profile: str = PROFILE) -> Path:
    return write_files("taobao", {"user_profile.csv": profile, "ad_feature.csv": ADS, "raw_sample.csv": sample})


def test_raw_release_maps_profiles_ads_and_sample(
    write_files: Callable[..., Path], store: Store, stored_events: Callable[[Store], EventBatch]
) -> None:
    report = run_import("taobao", _raw(write_files), store, progress=False)
    assert [f.rows_imported for f in report.files] == [2, 3, 4]
    assert (report.users, report.advertisers, report.campaigns, report.ads) == (2, 2, 2, 3)
    assert (report.events, report.duplicate_events) == (4, 2)
    woman = store.get_user("taobao:234")
    assert (woman.gender, woman.age_band, woman.city_tier) == (Gender.FEMALE, "taobao:5", 3)
    assert "pvalue_level" not in woman.attrs  # empty = missing
    assert woman.attrs["shopping_level"] == "3"
    man = store.get_user("taobao:523")
    assert (man.gender, man.city_tier, man.attrs["pvalue_level"]) == (Gender.MALE, None, "1")
    ad = store.get_ad("taobao:313401")
    assert (ad.campaign_id, ad.category, ad.brand, ad.price) == ("taobao:83237", "6406", None, 199.0)
    assert store.get_ad("taobao:63133").brand == "95471"
    assert store.get_campaign("taobao:83237").advertiser_id == "taobao:1"
    events = stored_events(store)
    clicks = events.take(events.type == int(EventType.CLICK))
    assert clicks.event_id.tolist() == ["taobao:clk:234:313401:1494550536:430548_1007"]
    assert (clicks.placement[0], clicks.ts[0], clicks.user_id[0]) == ("430548_1007", 1494550536.0, "taobao:234")
    assert store.count_events(type=EventType.IMPRESSION) == 3


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ("234,1494550536,313401,430548_1007,1,1\n", "clk"),
        ("234,1494550536,313401,430548_1007,0,0\n", "clk"),
        ("234,May 6,313401,430548_1007,1,0\n", "time_stamp"),
        ("234,1494550536,313401,,1,0\n", "pid"),
    ],
)
def test_bad_sample_row_is_located(write_files: Callable[..., Path], store: Store, row: str, field: str) -> None:
    with pytest.raises(RowError, match=rf"raw_sample\.csv:3: {field}: "):
        run_import(
            "taobao",
            _raw(write_files, SAMPLE.splitlines(keepends=True)[0] + SAMPLE.splitlines(keepends=True)[1] + row),
            store,
            progress=False,
        )
    assert store.count_events() == 0
    assert store.stats().ads == 3


def test_bad_profile_is_located(write_files: Callable[..., Path], store: Store) -> None:
    profile = PROFILE.replace("523,5,2,1,", "523,5,2,3,")
    with pytest.raises(RowError, match=r"user_profile\.csv:3: final_gender_code: expected 1 \(male\) or 2"):
        run_import("taobao", _raw(write_files, profile=profile), store, progress=False)
    assert store.stats().users == 0


def test_missing_table_is_named(write_files: Callable[..., Path], store: Store) -> None:
    folder = write_files("taobao", {"raw_sample.csv": SAMPLE, "ad_feature.csv": ADS})
    with pytest.raises(ImportFormatError, match=r"user_profile\.csv is missing; expected .*raw Taobao"):
        run_import("taobao", folder, store, progress=False)


def test_real_dmr_sample(
    real_dataset: Callable[[str], Path], store: Store, stored_events: Callable[[Store], EventBatch]
) -> None:
    folder = real_dataset("taobao_ad_dmr_sample")
    report = run_import("taobao-dmr", folder, store, progress=False)
    assert report.files[0].rows_imported == 500
    stats = store.stats()
    # PROVENANCE: 230 users, 297 ad groups, 293 campaigns, 289 advertisers, 210 clicks, pid 0/1 = 230/270.
    assert (stats.users, stats.ads, stats.campaigns, stats.advertisers) == (230, 297, 293, 289)
    assert stats.events == {"impression": 500, "click": 210, "conversion": 0}
    events = stored_events(store)
    imps = events.take(events.type == int(EventType.IMPRESSION))
    assert [int((imps.placement == p).sum()) for p in ("0", "1")] == [230, 270]
    assert sorted(imps.ts.tolist()) == [BASE_TS + line for line in range(1, 501)]
    first = (folder / "alimama_sampled_train.txt").read_text().splitlines()[0].split(",")
    assert len(first) == N_COLUMNS
    user = store.get_user(f"taobao-dmr:{first[250]}")
    assert user.attrs["cms_segid"] == first[251]
    assert store.get_ad(f"taobao-dmr:{first[259]}").price == pytest.approx(float(first[264]))
    assert "alimama_sampled_train:1:imp" in events.event_id[0]


def test_dmr_row_with_missing_columns_is_located(write_files: Callable[..., Path], store: Store) -> None:
    folder = write_files("dmr", {"a.txt": ",".join(["0"] * 266) + "\n"})
    with pytest.raises(RowError, match=r"a\.txt:1: row: has 266 fields; expected 267"):
        run_import("taobao-dmr", folder, store, progress=False)
