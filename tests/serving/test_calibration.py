"""pCTR calibration: a known logistic curve is recovered; no extrapolation; per-impression click rates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from serving_helpers import blocks_interactions

from adrec.data.interactions import Interactions
from adrec.data.schema import Event, EventType
from adrec.models.artifact import Artifact
from adrec.models.itemknn import ItemKNN
from adrec.serving.pipeline import Calibrator, ServingModel
from adrec.store import open_store


def _curve(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(1.5 * x - 3.0)))


def test_recovers_a_known_logistic_curve_and_does_not_extrapolate() -> None:
    rng = np.random.default_rng(0)
    s = rng.normal(size=40_000)
    clicked = rng.random(len(s)) < _curve(s)
    c = Calibrator.fit(s, clicked)
    grid = np.array([-1.0, 0.0, 1.0, 2.0])
    np.testing.assert_allclose(c(grid), _curve(grid), atol=0.015)
    assert c(np.array([50.0]))[0] <= _curve(np.array([3.2]))[0] + 0.02  # clipped near the data's top, not ~1


def test_without_clicks_every_score_gets_the_base_rate() -> None:
    c = Calibrator.fit(np.arange(100.0), np.zeros(100))
    assert np.ptp(c(np.arange(100.0))) == 0.0
    assert 0 < c(np.array([5.0]))[0] < 0.02


def test_fitted_from_the_store_at_the_per_impression_click_rate() -> None:
    data = blocks_interactions()
    artifact = Artifact.create(ItemKNN(k_neighbors=5).fit(data), data)
    users, ads = data.users.ids, data.items.ids
    events = []
    for n, (u, a) in enumerate((u, a) for u in users for a in ads):
        for r in range(10):  # 10 impressions of every pair, 1 click on every 5th pair: CTR 2 %
            events.append(Event(event_id=f"i{n}-{r}", type=EventType.IMPRESSION, user_id=u, ad_id=a, ts=1.0 + r))
        if n % 5 == 0:
            events.append(Event(event_id=f"c{n}", type=EventType.CLICK, user_id=u, ad_id=a, ts=20.0))
    with open_store("sqlite://") as store:
        store.append_events(events)
        model = ServingModel.from_artifact(artifact, store)
    assert abs(model.calibrator.base_rate - 0.02) < 0.002
    assert model.calibrator.n > 0


def test_held_out_calibration_learns_from_later_impressions_and_travels_with_the_model(tmp_path: Path) -> None:
    from adrec.models.bpr import BPR
    from adrec.serving.calibration import held_out_calibration
    from adrec.simulate import SimulationConfig, simulate
    from adrec.store.datasets import from_store

    def train(data: Interactions) -> BPR:
        return BPR(epochs=5, verbose=False).fit(data)

    market = SimulationConfig(seed=3, n_users=2000, n_advertisers=8, n_campaigns=20, n_ads=120, n_impressions=40_000)
    with open_store("sqlite://") as store:
        simulate(market, store, progress=False)
        seen: list[Interactions] = []
        fitted = held_out_calibration(lambda d: seen.append(d) or train(d), store, holdout=0.25)
        everything = from_store(store).interactions
        with pytest.raises(ValueError, match="holdout"):
            held_out_calibration(train, store, holdout=1.0)
        assert held_out_calibration(train, store, holdout=0.001) is None  # too few held-out clicks to fit on
        assert fitted is not None and fitted["held_out"] and fitted["n"] > 3000  # of the 10,000 held out
        # The copy learned from the earlier clicks only.
        (early,) = seen
        assert 0 < early.nnz < everything.nnz
        artifact = Artifact.create(train(everything), everything)
        artifact.calibration = fitted
        path = artifact.save(tmp_path / "bpr")
        served = ServingModel.load(path, store)
    assert served.artifact.calibration == fitted
    assert served.calibrator == Calibrator(**fitted)  # used as it is, not refitted in-sample at load


def test_held_out_impressions_are_the_latest_of_the_log() -> None:
    # The held-out share is cut from the end of what is read: with a cap, the cap must keep the newest
    # impressions (the live ones in an experiment), not the oldest.
    from adrec.serving.calibration import _impressions
    from adrec.simulate import SimulationConfig, simulate

    market = SimulationConfig(seed=4, n_users=500, n_advertisers=5, n_campaigns=10, n_ads=60, n_impressions=25_000)
    with open_store("sqlite://") as store:
        simulate(market, store, progress=False)
        every = np.concatenate([b.ts for b in store.iter_events(types=[EventType.IMPRESSION], batch_size=7_000)])
        users, ads, ts, clicks = _impressions(store, max_impressions=10_000)
    assert len(ts) == len(users) == len(ads) == 10_000
    np.testing.assert_array_equal(ts, every[-10_000:])
    assert len(clicks) > 0
