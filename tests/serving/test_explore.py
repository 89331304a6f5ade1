"""Exploration strategies: the same re-ranking rules inside every draw, propensities that match the frequencies
of many independent requests, closed forms where they exist, the per-request cap, and the pipeline's tokens and
events carrying each served ad's propensity."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterator

import numpy as np
import pytest
from serving_helpers import SECRET, blocks_model, fill, user_id

from adrec.data.schema import EventType
from adrec.exceptions import ConfigError
from adrec.feedback.tokens import TokenSigner
from adrec.serving.catalog import CatalogSnapshot
from adrec.serving.explore import Exploration, fill_slots
from adrec.serving.pipeline import EXPLORE_FREE, Pipeline, PipelineConfig, rerank
from adrec.store import Feedback, Store, open_store

# A pool of 6 ads (eCPM best first) of 4 advertisers and 3 categories.
VALUES = np.array([10.0, 8.0, 7.0, 5.0, 4.0, 2.0])
ADVERTISER = np.array([0, 0, 0, 1, 2, 3])
CATEGORY = np.array([0, 0, 1, 1, 2, 2])
RULES = {"max_per_advertiser": 2, "category_decay": 0.7}


def _fill(explore: Exploration, seed: int, k: int = 3, **kw: object) -> tuple[list[int], list[float]]:
    f = fill_slots(VALUES, ADVERTISER, CATEGORY, k, explore, np.random.default_rng(seed), **RULES, **kw)  # type: ignore[arg-type]
    return f.picks.tolist(), f.propensity.tolist()


def test_exploiting_fills_the_slots_exactly_as_the_pipelines_reranking() -> None:
    rng = np.random.default_rng(0)
    for trial in range(50):
        n = int(rng.integers(3, 30))
        values = np.sort(rng.uniform(0.1, 10, n))[::-1]
        adv, cat = rng.integers(0, 4, n), rng.integers(0, 3, n)
        k, cap, decay = int(rng.integers(1, 6)), int(rng.integers(1, 3)), float(rng.choice([0.5, 0.7, 1.0]))
        got = fill_slots(
            values, adv, cat, k, Exploration("none", draws=3), rng, max_per_advertiser=cap, category_decay=decay
        )
        snapshot = CatalogSnapshot.__new__(CatalogSnapshot)
        object.__setattr__(snapshot, "ad_advertiser_code", adv)
        object.__setattr__(snapshot, "ad_category_code", cat)
        want = rerank(snapshot, np.arange(n), values, np.arange(n), k, max_per_advertiser=cap, category_decay=decay)
        assert got.picks.tolist() == want, trial
        assert (got.propensity == 1.0).all()


@pytest.mark.parametrize(
    "explore",
    [
        Exploration("egreedy", epsilon=0.3, draws=300),
        Exploration("softmax", temperature=0.5, draws=300),
        Exploration("thompson", prior_precision=1.0, draws=300),
        Exploration("egreedy", epsilon=1.0, max_explore=1, draws=300),
        Exploration("softmax", temperature=1.0, draws=300),
    ],
    ids=["egreedy", "softmax", "thompson", "egreedy-capped", "softmax-some-capped-campaigns"],
)
def test_propensities_match_the_frequencies_of_many_requests(explore: Exploration) -> None:
    """Over 3,000 independent requests, how often each (slot, ad) was served must match the mean propensity the
    policy logged for it (each logged propensity is the probability of that ad in that slot for that request)."""
    extra = {}
    if explore.strategy == "thompson":
        extra = {
            "pctr": np.array([0.05, 0.04, 0.03, 0.02, 0.02, 0.01]),
            "impressions": np.array([5000.0, 100.0, 0.0, 2000.0, 10.0, 0.0]),
            "ctr_priced": np.array([True, True, True, True, False, True]),
        }
    if explore.temperature == 1.0:  # ads 1 and 4 belong to campaigns at their exploration cap
        extra = {"explorable": np.array([True, False, True, True, False, True])}
    n = 3000
    served: Counter[tuple[int, int]] = Counter()
    logged: dict[tuple[int, int], list[float]] = defaultdict(list)
    for seed in range(n):
        picks, props = _fill(explore, seed, **extra)
        for slot, (a, p) in enumerate(zip(picks, props, strict=True)):
            served[slot, a] += 1
            logged[slot, a].append(p)
    for key, count in served.items():
        freq = count / n
        mean_logged = float(np.mean(logged[key]))
        # The frequency's sampling error, plus the Monte Carlo estimate's upward bias (the served run is one of
        # its draws + 1 runs: at most 1 / (draws + 1)).
        tolerance = 4 * np.sqrt(freq * (1 - freq) / n) + 1.5 / (explore.draws + 1)
        assert abs(freq - mean_logged) < tolerance, (key, freq, mean_logged)


def test_ads_of_campaigns_at_their_cap_are_shown_only_as_the_exploiting_choice() -> None:
    explorable = np.array([True, False, True, True, False, True])
    for seed in range(300):
        f = fill_slots(
            VALUES,
            ADVERTISER,
            CATEGORY,
            4,
            Exploration("egreedy", epsilon=1.0, max_explore=4, draws=0),
            np.random.default_rng(seed),
            **RULES,
            explorable=explorable,  # type: ignore[arg-type]
        )
        for a, explored in zip(f.picks.tolist(), f.explored.tolist(), strict=True):
            assert explorable[a] or not explored


def test_slot_one_has_closed_forms() -> None:
    picks, props = _fill(Exploration("egreedy", epsilon=0.3, draws=5), seed=1)
    expected = 0.7 * (picks[0] == 0) + 0.3 / 6
    assert props[0] == pytest.approx(expected, abs=1e-12)
    picks, props = _fill(Exploration("softmax", temperature=0.5, draws=5), seed=2)
    weights = VALUES ** (1 / 0.5)
    assert props[0] == pytest.approx(weights[picks[0]] / weights.sum(), rel=1e-9)


def test_the_cap_on_exploratory_slots_per_request() -> None:
    no_explore = _fill(Exploration("egreedy", epsilon=1.0, max_explore=0, draws=10), seed=3)
    exploit = _fill(Exploration("none", draws=0), seed=3)
    assert no_explore[0] == exploit[0]
    assert no_explore[1] == [1.0, 1.0, 1.0]
    # With one exploratory slot allowed and epsilon 1, the first slot always explores (the uniform draw may hit
    # the best ad) and every later slot exploits given the slots above it.
    for seed in range(200):
        picks, _ = _fill(Exploration("egreedy", epsilon=1.0, max_explore=1, draws=0), seed=seed, k=4)
        if picks[0] != 0:  # slot 1 explored: the rest is the re-ranking of what remains
            assert 0 in picks[1:]


def test_bad_exploration_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="exploration must be one of"):
        PipelineConfig(exploration="greedy")
    with pytest.raises(ConfigError, match="epsilon"):
        PipelineConfig(exploration="egreedy", epsilon=1.5)


# -- in the pipeline -----------------------------------------------------------------------------------------------
NOW = 1_790_035_200.0 + 12 * 3600


@pytest.fixture
def store() -> Iterator[Store]:
    with open_store("sqlite://") as s:
        fill(s)
        yield s


@pytest.mark.parametrize("strategy", ["egreedy", "softmax", "thompson"])
def test_served_ads_carry_their_propensity_into_the_token_and_the_event_log(store: Store, strategy: str) -> None:
    config = PipelineConfig(exploration=strategy, epsilon=0.5, max_per_advertiser=10, category_decay=1.0)
    signer = TokenSigner(SECRET)
    p = Pipeline(store, blocks_model(), signer, config)
    r = p.recommend(user_id(0, 0), 4, now=NOW, request_id="abc123")
    again = p.recommend(user_id(0, 0), 4, now=NOW, request_id="abc123")
    assert [a.ad_id for a in again.ads] == [a.ad_id for a in r.ads]  # the same request draws the same
    deliveries = [signer.verify(a.token, now=NOW) for a in r.ads]
    assert [d.position for d in deliveries] == [1, 2, 3, 4]
    for d, ad in zip(deliveries, r.ads, strict=True):
        assert d.propensity is not None and 0 < d.propensity <= 1
        assert ad.price <= ad.bid
    store.apply_feedback([Feedback(f"imp-{d.iid}", EventType.IMPRESSION, NOW + 1, d) for d in deliveries])
    batch = next(store.iter_events(types=[EventType.IMPRESSION]))
    logged = dict(zip(batch.ad_id.tolist(), batch.propensity.tolist(), strict=True))
    assert logged == {d.ad_id: d.propensity for d in deliveries}


def test_a_campaigns_exploratory_impressions_stop_at_its_daily_cap(store: Store) -> None:
    config = PipelineConfig(
        exploration="egreedy", epsilon=1.0, max_explore=4, campaign_explore_share=0.0, max_per_advertiser=10
    )
    p = Pipeline(store, blocks_model(), TokenSigner(SECRET), config)
    for i in range(200):
        p.recommend(user_id(i % 3, i % 4), 4, now=NOW, request_id=f"{i:08x}")
    counts = p._explored._counts  # per campaign: [exploratory, all] impressions today
    assert sum(total for _, total in counts.values()) == 800
    for explored, _ in counts.values():  # share 0: only the free allowance (a request may cross it by its slots)
        assert EXPLORE_FREE <= explored < EXPLORE_FREE + 4
    # The next day the allowance starts again.
    p.recommend(user_id(0, 0), 4, now=NOW + 86_400, request_id="ffffffff")
    assert sum(total for _, total in p._explored._counts.values()) == 4


def test_exploit_only_logs_no_propensity(store: Store) -> None:
    signer = TokenSigner(SECRET)
    r = Pipeline(store, blocks_model(), signer, PipelineConfig(explore_share=0.0)).recommend(user_id(1, 1), 3, now=NOW)
    assert all(signer.verify(a.token, now=NOW).propensity is None for a in r.ads)


def test_an_explored_slot_order_never_raises_a_price(store: Store) -> None:
    """Whatever order exploration shows the ads in, each pays the GSP price of its eCPM rank among them."""
    signer = TokenSigner(SECRET)
    explore = Pipeline(
        store,
        blocks_model(),
        signer,
        PipelineConfig(exploration="egreedy", epsilon=1.0, max_explore=4, max_per_advertiser=10, category_decay=1.0),
    )
    for i in range(30):
        r = explore.recommend(user_id(2, 1), 4, now=NOW, request_id=f"{i:08x}")
        ranked = sorted(r.ads, key=lambda a: -a.ecpm)
        for a, nxt in itertools.pairwise(ranked):
            assert a.price <= a.bid
            assert a.price <= nxt.ecpm / (a.pctr * 1000) + 1e-6  # prices are rounded to 6 decimals
