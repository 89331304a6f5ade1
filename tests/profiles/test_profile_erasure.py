"""Right to erasure: deleting a user removes their profile, derived data and training data, on every backend."""

from __future__ import annotations

import pytest
from profile_helpers import T0, USERS, batch, seed_market

from adrec.data.schema import EventType
from adrec.exceptions import NotFoundError
from adrec.profiles import ProfileBuilder, Segment, resolve
from adrec.store import Store
from adrec.store.datasets import from_store

CLK, IMP = EventType.CLICK, EventType.IMPRESSION


def test_delete_user_removes_profile_derived_data_and_training_rows(store: Store) -> None:
    seed_market(store)
    rows = [("ann", "cos1", CLK, T0), ("ann", "shoe", IMP, T0), ("bob", "cos2", CLK, T0), ("dan", "cos1", CLK, T0)]
    store.append_events(batch(rows))
    ProfileBuilder().rebuild(store)
    store.upsert_profiles([store.get_profile(u).with_embedding([0.1, 0.2, 0.3]) for u in ("ann", "bob")])
    before = from_store(store)
    assert "ann" in before.interactions.users
    assert resolve(store, Segment(interests_include={"cosmetics"})) == ["ann", "bob", "dan"]

    report = store.delete_user("ann")
    assert (report.users, report.events, report.profiles) == (1, 2, 1)
    with pytest.raises(NotFoundError):
        store.get_profile("ann")
    assert store.get_profiles(["ann", "bob"]).keys() == {"bob"}
    assert "ann" not in {p.user_id for page in store.iter_profiles() for p in page}
    assert resolve(store, Segment(interests_include={"cosmetics"})) == ["bob", "dan"]
    # The user signs up again: nothing derived from the old account comes back.
    store.upsert_users([USERS[0]])
    again = store.get_profile("ann")
    assert (again.behaviour, again.embedding) == (None, None)
    assert resolve(store, Segment(interests_include={"cosmetics"}, min_affinity=0.01)) == ["bob", "dan"]
    ProfileBuilder().rebuild(store)
    assert store.get_profile("ann").behaviour is None  # no events left to rebuild from

    # What models retrain from no longer holds the user or their events.
    after = from_store(store)
    assert "ann" not in after.interactions.users
    assert after.interactions.matrix.nnz == before.interactions.matrix.nnz - 1
    assert store.get_profile("bob").embedding == (0.1, 0.2, 0.3)  # other users keep theirs
