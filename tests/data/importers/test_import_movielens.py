"""MovieLens 100K: the real release imported end to end, and small hand-written folders for the edge cases."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from adrec.data.importers import ImportReport, run_import
from adrec.data.importers.movielens import CLICK_MIN_RATING
from adrec.data.schema import EventBatch, EventType, Gender
from adrec.store import Store, open_store


@pytest.fixture(scope="module")
def ml100k(real_dataset: Callable[[str], Path]) -> Path:
    return real_dataset("ml-100k")


@pytest.fixture(scope="module")
def imported(ml100k: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, ImportReport]]:
    """The real ml-100k imported once into a fresh store (shared by this module's read-only tests)."""
    with open_store(f"sqlite:///{tmp_path_factory.mktemp('ml')}/t.db") as store:
        yield store, run_import("movielens", ml100k, store, progress=False)


def _ratings(ml100k: Path) -> list[tuple[int, int, int, int]]:
    """u.data parsed here, independently of the importer."""
    rows = []
    for line in (ml100k / "u.data").read_text().splitlines():
        user, item, rating, ts = (int(x) for x in line.split("\t"))
        rows.append((user, item, rating, ts))
    return rows


def test_counts_match_the_release(imported: tuple[Store, ImportReport], ml100k: Path) -> None:
    store, report = imported
    ratings = _ratings(ml100k)
    expected_clicks = sum(1 for r in ratings if r[2] >= 4)
    stats = store.stats()
    assert (stats.users, stats.ads, stats.advertisers, stats.campaigns) == (943, 1682, 1, 1)
    assert stats.events["impression"] == len(ratings) == 100_000
    assert stats.events["click"] == expected_clicks
    assert [(f.path.name, f.rows_read, f.rows_imported, f.bad_rows) for f in report.files] == [
        ("u.user", 943, 943, 0),
        ("u.item", 1682, 1682, 0),
        ("u.data", 100_000, 100_000, 0),
    ]
    assert (report.users, report.ads, report.events) == (943, 1682, 100_000 + expected_clicks)


@pytest.mark.parametrize("user", [1, 196, 405, 943])
def test_impressions_carry_the_rating_and_clicks_follow_the_rule(
    imported: tuple[Store, ImportReport], ml100k: Path, user: int
) -> None:
    store, _ = imported
    expected = {f"ml-100k:{i}": (rating, ts) for u, i, rating, ts in _ratings(ml100k) if u == user}
    events = EventBatch.concat(list(store.iter_events(user_id=f"ml-100k:{user}")))
    imps = events.take(events.type == int(EventType.IMPRESSION))
    assert dict(zip(imps.ad_id, zip(imps.value.tolist(), imps.ts.tolist(), strict=True), strict=True)) == expected
    clicks = events.take(events.type == int(EventType.CLICK))
    assert sorted(clicks.ad_id) == sorted(ad for ad, (rating, _) in expected.items() if rating >= CLICK_MIN_RATING)
    assert np.isnan(clicks.value).all()
    assert len(events) == len(imps) + len(clicks)


def test_users_and_movies_are_mapped(imported: tuple[Store, ImportReport]) -> None:
    store, _ = imported
    user = store.get_user("ml-100k:1")  # 1|24|M|technician|85711
    assert (user.age, user.gender, user.attrs) == (24, Gender.MALE, {"occupation": "technician", "zip_code": "85711"})
    toy_story = store.get_ad("ml-100k:1")  # flags: Animation, Children's, Comedy
    assert (toy_story.title, toy_story.category, toy_story.body) == (
        "Toy Story (1995)",
        "Animation",
        "Animation|Children's|Comedy",
    )
    assert toy_story.campaign_id == "ml-100k"
    assert store.get_ad("ml-100k:543").title == "Misérables, Les (1995)"  # u.item is Latin-1
    assert store.get_ad("ml-100k:267").category == "unknown"  # the one movie flagged only "unknown"
    assert " " not in (store.get_ad("ml-100k:279").landing_url or "")  # its IMDb URL has a space


@pytest.mark.slow
def test_reimport_adds_no_events(imported: tuple[Store, ImportReport], ml100k: Path) -> None:
    store, first = imported
    before = store.stats()
    again = run_import("movielens", ml100k, store, progress=False)
    assert again.events == 0
    assert again.duplicate_events == first.events
    assert store.stats() == before


# -- small hand-written folders ------------------------------------------------------------------------------
GENRE_FLAGS = "|".join(["0"] * 19)


def _movie(movie: int, title: str, flags: str = GENRE_FLAGS) -> str:
    return f"{movie}|{title}|01-Jan-1995||http://us.imdb.com/M/title-exact?x|{flags}\n"


def test_small_folder_click_rule_and_ids(
    write_files: Callable[..., Path], store: Store, stored_events: Callable[[Store], EventBatch]
) -> None:
    folder = write_files(
        "ml",
        {
            "u.user": "1|30|F|writer|12345\n2|40|M|other|T8H1N\n",
            "u.item": _movie(10, "A (1990)") + _movie(11, "B (1991)"),
            "u.data": "1\t10\t5\t100\n1\t11\t3\t200\n2\t10\t4\t300\n",
        },
    )
    report = run_import("movielens", folder, store, progress=False)
    events = stored_events(store)
    assert sorted(events.event_id.tolist()) == sorted(
        ["ml-100k:imp:1:10", "ml-100k:clk:1:10", "ml-100k:imp:1:11", "ml-100k:imp:2:10", "ml-100k:clk:2:10"]
    )
    assert report.events == 5
    assert store.get_ad("ml-100k:10").category is None  # no genre flagged
