"""Two processes' writers on one SQLite ledger (``adrec serve --workers 2``): a resent event is charged once.

Each store below has its own connection pool and write lock, as each uvicorn worker process has. The first store's
connection runs the second store's write of the same click at the moment the first is about to write its own:
the lookups of the first must not have been made before that write committed.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from adrec.data.schema import Ad, Advertiser, Campaign, EventType
from adrec.store import Delivery, Feedback, FeedbackResult, open_store


def test_a_click_sent_to_two_workers_at_once_is_charged_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    d = Delivery("r1", "u1", "a1", "c1", "adv1", "CPC", 0.5, 1.7e9, "feed")
    click = [Feedback("c1", EventType.CLICK, d.served_ts + 1, d)]
    other_results: list[FeedbackResult] = []
    other_done = threading.Event()
    armed = threading.Event()

    with open_store(url) as other:
        other.upsert_advertisers([Advertiser(advertiser_id="adv1", name="Acme")])
        other.upsert_campaigns([Campaign(campaign_id="c1", advertiser_id="adv1", name="Spring", bid=1.0)])
        other.upsert_ads([Ad(ad_id="a1", campaign_id="c1")])
        other.apply_feedback([Feedback("i1", EventType.IMPRESSION, d.served_ts, d)])

        def other_worker() -> None:
            other_results.append(other.apply_feedback(click))
            other_done.set()

        def on_statement(sql: str) -> None:
            if armed.is_set() and sql.startswith("INSERT"):
                armed.clear()
                threading.Thread(target=other_worker).start()
                other_done.wait(timeout=1.0)  # long enough for it to commit, unless it waits for our lock

        def trace(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.set_trace_callback(on_statement)

        event.listen(Engine, "connect", trace)  # only the connections of the store opened next
        try:
            first = open_store(url)
        finally:
            event.remove(Engine, "connect", trace)
        with first:
            armed.set()
            result = first.apply_feedback(click)
            assert other_done.wait(timeout=30)
            assert not armed.is_set()  # the race did run
            (other_result,) = other_results
            assert sorted([result.accepted, other_result.accepted]) == [0, 1]
            assert result.duplicates + other_result.duplicates == 1
            assert result.spend + other_result.spend == pytest.approx(0.5)
            (row,) = first.delivery_report()
            assert (row.clicks, row.spend) == (1, pytest.approx(0.5))
