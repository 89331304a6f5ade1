"""pCTR calibration: a known logistic curve is recovered; no extrapolation; per-impression click rates."""

from __future__ import annotations

import numpy as np
from serving_helpers import blocks_interactions

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
