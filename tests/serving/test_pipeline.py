"""The decision pipeline on the checkerboard market (see serving_helpers): known answers for ranking, targeting,
budgets, caps, cold start, exploration, pricing and model swaps."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator

import pytest
from serving_helpers import GROUPS, PER, SECRET, ad_id, blocks_model, fill, user_id

from adrec.data.schema import Ad, Campaign, Event, EventType, FrequencyCap, Pacing, PricingModel, Targeting, User
from adrec.exceptions import ConfigError
from adrec.feedback.tokens import TokenSigner
from adrec.serving.pipeline import Pipeline, PipelineConfig
from adrec.store import Feedback, Store, open_store

NOW = 1_790_035_200.0 + 12 * 3600  # noon UTC (1_790_035_200 is a midnight): even pacing allows ~half the budget
NEUTRAL = PipelineConfig(max_per_advertiser=10, category_decay=1.0, explore_share=0.0)
LEDGER_ONLY = dataclasses.replace(NEUTRAL, outstanding_window_s=0.0)


@pytest.fixture
def store(tmp_path: object) -> Iterator[Store]:
    with open_store("sqlite://") as s:
        fill(s)
        yield s


def pipeline(store: Store, config: PipelineConfig = NEUTRAL) -> Pipeline:
    return Pipeline(store, blocks_model(), TokenSigner(SECRET), config)


def test_each_users_top_ad_is_its_own_and_the_rest_come_from_its_group(store: Store) -> None:
    p = pipeline(store)
    for g in range(len(GROUPS)):
        for j in range(PER):
            r = p.recommend(user_id(g, j), 3, now=NOW)
            assert not r.cold_start
            assert r.ads[0].ad_id == ad_id(g, j)
            assert all(a.ad_id.startswith(f"ad-{g}-") for a in r.ads)
            assert all(a.source == "model" for a in r.ads)


def test_ranked_by_ecpm_priced_by_gsp_never_above_the_bid(store: Store) -> None:
    r = pipeline(store).recommend(user_id(0, 0), 5, now=NOW)
    ecpms = [a.ecpm for a in r.ads]
    assert ecpms == sorted(ecpms, reverse=True)
    for a, nxt in zip(r.ads, r.ads[1:], strict=False):
        assert a.price <= a.bid
        assert a.price == pytest.approx(min(a.bid, nxt.ecpm / (a.pctr * 1000)), rel=1e-4)
    explained = r.ads[0]
    assert explained.rules == ["open targeting (no rules)"]
    assert explained.score is not None and explained.pctr > 0


def test_tokens_verify_and_carry_the_served_price(store: Store) -> None:
    r = pipeline(store).recommend(user_id(1, 2), 2, now=NOW)
    d = TokenSigner(SECRET).verify(r.ads[0].token, now=NOW)
    assert (d.user_id, d.ad_id, d.price, d.pricing_model) == (user_id(1, 2), r.ads[0].ad_id, r.ads[0].price, "CPC")


def test_unknown_user_is_served_by_cold_start_not_an_error(store: Store) -> None:
    r = pipeline(store).recommend("never-seen", 4, now=NOW)
    assert r.cold_start and len(r.ads) == 4
    assert {a.source for a in r.ads} == {"popular"}


def test_user_without_consent_gets_no_behavioural_targeting(store: Store) -> None:
    store.upsert_users([User(user_id=user_id(2, 0), consent=False, interests=("games",))])
    cmp = store.get_campaign("cmp-2")
    store.upsert_campaigns([cmp.model_copy(update={"targeting": Targeting(interests_include=frozenset({"games"}))})])
    p = pipeline(store)
    r = p.recommend(user_id(2, 0), 5, now=NOW)
    assert r.cold_start  # the model is not asked
    assert not any(a.campaign_id == "cmp-2" for a in r.ads)  # interest targeting cannot match without consent
    store.upsert_users([User(user_id=user_id(2, 0), consent=True, interests=("games",))])
    r = p.recommend(user_id(2, 0), 5, now=NOW)
    assert r.ads[0].ad_id == ad_id(2, 0)
    assert any("matched ['games']" in rule for rule in r.ads[0].rules)


def test_targeting_rules_exclude_users_who_do_not_match(store: Store) -> None:
    cmp = store.get_campaign("cmp-0")
    store.upsert_campaigns([cmp.model_copy(update={"targeting": Targeting(age_min=18, age_max=34)})])
    p = pipeline(store)
    young, old = user_id(0, 0), user_id(0, 4)  # ages 20 and 60
    assert p.recommend(young, 3, now=NOW).ads[0].campaign_id == "cmp-0"
    r = p.recommend(old, 5, now=NOW)
    assert r.ads and all(a.campaign_id != "cmp-0" for a in r.ads)
    assert p.recommend(young, 3, now=NOW, exclude_advertisers=["adv-0"]).ads[0].campaign_id != "cmp-0"


def _charge(store: Store, p: Pipeline, user: str, kind_ts: float, campaign: str) -> None:
    """Serve ``user`` and record an impression and a click of the first ad of ``campaign``."""
    r = p.recommend(user, 5, now=kind_ts)
    served = next(a for a in r.ads if a.campaign_id == campaign)
    d = TokenSigner(SECRET).verify(served.token, now=kind_ts)
    store.apply_feedback(
        [
            Feedback(f"i-{d.iid}", EventType.IMPRESSION, kind_ts, d),
            Feedback(f"c-{d.iid}", EventType.CLICK, kind_ts + 1, d),
        ]
    )
    p.refresh_spend()


def test_daily_budget_and_even_pacing_stop_a_campaign(store: Store) -> None:
    cmp = store.get_campaign("cmp-1")
    store.upsert_campaigns([cmp.model_copy(update={"daily_budget": 2.0, "pacing": Pacing.ASAP})])
    p = pipeline(store, LEDGER_ONLY)  # budgets from recorded spend alone (outstanding tokens: below)
    user = user_id(1, 0)
    spent = 0.0
    while any(a.campaign_id == "cmp-1" for a in p.recommend(user, 5, now=NOW).ads):
        _charge(store, p, user, NOW, "cmp-1")
        spent = store.campaign_spend(time.strftime("%Y-%m-%d", time.gmtime(NOW)))["cmp-1"][0]
        assert spent < 2.0 + 1.0  # stops once the budget is reached (one click of overshoot at most)
    assert spent >= 2.0
    # Even pacing: at 01:00 UTC only 1/24 + 2 % of the day's budget may be spent: 1.23 of 20 (2+ are spent).
    store.upsert_campaigns([cmp.model_copy(update={"daily_budget": 20.0, "pacing": Pacing.EVEN})])
    p.refresh_catalog()
    early = NOW - 11 * 3600
    assert not any(a.campaign_id == "cmp-1" for a in p.recommend(user, 5, now=early).ads)
    assert any(a.campaign_id == "cmp-1" for a in p.recommend(user, 5, now=NOW).ads)  # by noon it may spend 10.4


def test_frequency_cap_per_ad_and_per_campaign(store: Store) -> None:
    cmp = store.get_campaign("cmp-3")
    store.upsert_campaigns([cmp.model_copy(update={"frequency": FrequencyCap(per_ad=1, per_campaign=2)})])
    p = pipeline(store, LEDGER_ONLY)  # caps from recorded impressions alone (outstanding tokens: below)
    user = user_id(3, 1)
    first = p.recommend(user, 1, now=NOW).ads[0]
    assert first.ad_id == ad_id(3, 1)
    _charge(store, p, user, NOW, "cmp-3")
    r = p.recommend(user, 5, now=NOW + 10)
    assert ad_id(3, 1) not in [a.ad_id for a in r.ads]  # per-ad cap of 1 reached
    assert any(a.campaign_id == "cmp-3" for a in r.ads)
    _charge(store, p, user, NOW + 20, "cmp-3")
    assert all(a.campaign_id != "cmp-3" for a in p.recommend(user, 5, now=NOW + 30).ads)  # campaign cap of 2
    later = NOW + 86_400 + 100  # the window (a day) has passed
    assert p.recommend(user, 1, now=later).ads[0].ad_id == ad_id(3, 1)


def test_tokens_not_yet_reported_count_against_frequency_caps(store: Store) -> None:
    # The probe's case: cap 2 per campaign per hour, 10 requests for one user before any impression is reported.
    cmp = store.get_campaign("cmp-3")
    store.upsert_campaigns([cmp.model_copy(update={"frequency": FrequencyCap(per_campaign=2, window_s=3_600.0)})])
    p = pipeline(store)
    user = user_id(3, 1)
    served = [a for n in range(10) for a in p.recommend(user, 1, now=NOW + n).ads if a.campaign_id == "cmp-3"]
    assert len(served) == 2
    # Other users are not affected, and the window ends.
    assert p.recommend(user_id(3, 2), 1, now=NOW).ads[0].campaign_id == "cmp-3"
    assert p.recommend(user, 1, now=NOW + 3_700).ads[0].campaign_id == "cmp-3"
    # The pending tokens and their recorded impressions are the same ads: once reported, they are not counted twice.
    q = pipeline(store)
    first = q.recommend(user_id(3, 3), 1, now=NOW).ads[0]
    d = TokenSigner(SECRET).verify(first.token, now=NOW)
    store.apply_feedback([Feedback("i-q", EventType.IMPRESSION, NOW + 1, d)])
    assert q.recommend(user_id(3, 3), 1, now=NOW + 2).ads[0].campaign_id == "cmp-3"  # 1 of 2, not 2 of 2


def test_repeat_decay_lowers_the_pctr_of_ads_the_user_has_just_seen(store: Store) -> None:
    user = user_id(2, 1)
    off = pipeline(store)
    first = off.recommend(user, 1, now=NOW).ads[0]
    assert off.recommend(user, 1, now=NOW + 2).ads[0].pctr == first.pctr  # off by default: no change
    tired = dataclasses.replace(NEUTRAL, repeat_decay=0.5, repeat_window_s=3_600.0)
    p = pipeline(store, tired)
    served = p.recommend(user, 1, now=NOW).ads[0]
    assert (served.ad_id, served.pctr) == (first.ad_id, first.pctr)
    # Served once (not reported yet): its pCTR halves, so the next request ranks the rest against half of it.
    again = {a.ad_id: a for a in p.recommend(user, 3, now=NOW + 10).ads}
    if first.ad_id in again:
        assert again[first.ad_id].pctr == pytest.approx(first.pctr * 0.5**1, rel=1e-6)
    # Reported and served again: recorded and pending impressions are the same ones, counted once each.
    d = TokenSigner(SECRET).verify(served.token, now=NOW)
    store.apply_feedback([Feedback("i-rep", EventType.IMPRESSION, NOW + 1, d)])
    q = pipeline(store, tired)  # a new process: only the recorded impression
    assert {a.ad_id: a.pctr for a in q.recommend(user, 5, now=NOW + 20).ads}.get(first.ad_id, 0.0) == pytest.approx(
        first.pctr * 0.5, rel=1e-6
    )
    # Outside the window the user has recovered.
    late = q.recommend(user, 1, now=NOW + 3_700).ads[0]
    assert (late.ad_id, late.pctr) == (first.ad_id, pytest.approx(first.pctr, rel=1e-6))
    with pytest.raises(ConfigError, match="repeat_decay"):
        PipelineConfig(repeat_decay=0.0)


def test_the_expected_cost_of_outstanding_tokens_throttles_a_budget(store: Store) -> None:
    # Daily budget 0.2, CPC, asap: with nothing reported yet, serving stops once the tokens handed out are expected
    # to spend the budget (sum of price x pCTR), instead of serving on until the clicks arrive.
    cmp = store.get_campaign("cmp-1")
    store.upsert_campaigns([cmp.model_copy(update={"daily_budget": 0.2, "pacing": Pacing.ASAP})])
    p = pipeline(store, dataclasses.replace(NEUTRAL, spend_refresh_s=0.0))
    costs = [
        a.price * a.pctr
        for n in range(500)
        for a in p.recommend(user_id(1, n % PER), 1, now=NOW + n).ads
        if a.campaign_id == "cmp-1"
    ]
    assert 0 < len(costs) < 500
    assert sum(costs[:-1]) < 0.2 <= sum(costs)  # stopped by the ad whose expected cost reached the budget
    # Tokens age out of the window (their events would have come by then): the campaign serves again.
    assert p.recommend(user_id(1, 0), 1, now=NOW + 500 + 600 + 10).ads[0].campaign_id == "cmp-1"
    # Without the throttle the same traffic serves the campaign every time.
    q = pipeline(store, dataclasses.replace(LEDGER_ONLY, spend_refresh_s=0.0))
    assert all(q.recommend(user_id(1, n % PER), 1, now=NOW + n).ads[0].campaign_id == "cmp-1" for n in range(100))


def test_fresh_ads_get_an_exploration_share(store: Store) -> None:
    store.upsert_ads([Ad(ad_id="fresh-1", campaign_id="cmp-0", title="new", category="shoes")])
    p = pipeline(store, PipelineConfig(max_per_advertiser=10, category_decay=1.0, explore_share=0.2))
    r = p.recommend(user_id(1, 1), 5, now=NOW)
    assert [a.ad_id for a in r.ads if a.source == "explore"] == ["fresh-1"]


def test_an_ad_the_model_indexes_but_never_saw_a_click_of_is_explored_not_scored(store: Store) -> None:
    # A model trained from a store lists every ad of its catalogue, new ones included, with an untrained embedding;
    # such an ad used to count as known: never explored, and ranked by its meaningless score.
    new_ad = ad_id(1, 3)
    assert pipeline(store).recommend(user_id(1, 3), 1, now=NOW).ads[0].ad_id == new_ad  # its user's top ad ...
    model = blocks_model()
    model.popularity = model.popularity.copy()
    model.popularity[model.artifact.items.index(new_ad)] = 0.0  # ... until the model never saw a click of it
    exploring = dataclasses.replace(NEUTRAL, explore_share=0.5)
    p = Pipeline(store, model, TokenSigner(SECRET), exploring)
    served = [a for j in range(PER) for a in p.recommend(user_id(1, j), 2, now=NOW).ads]
    assert {a.source for a in served if a.ad_id == new_ad} == {"explore"}
    assert {a.source for a in served if a.ad_id != new_ad} == {"model"}
    q = Pipeline(store, model, TokenSigner(SECRET), NEUTRAL)  # no exploration slots: it is not shown at all
    assert all(a.ad_id != new_ad for j in range(PER) for a in q.recommend(user_id(1, j), 2, now=NOW).ads)


def test_per_advertiser_cap_and_category_diversity(store: Store) -> None:
    p = pipeline(store, PipelineConfig(max_per_advertiser=2, category_decay=1.0, explore_share=0.0))
    r = p.recommend(user_id(0, 0), 6, now=NOW)
    by_adv = [a.advertiser_id for a in r.ads]
    assert max(by_adv.count(x) for x in set(by_adv)) <= 2
    p = pipeline(store, PipelineConfig(max_per_advertiser=10, category_decay=0.01, explore_share=0.0))
    r = p.recommend(user_id(0, 0), 4, now=NOW)
    assert len({a.category for a in r.ads}) == 4


def test_never_empty_when_eligible_ads_exist_and_empty_when_none(store: Store) -> None:
    for g in range(len(GROUPS)):
        cmp = store.get_campaign(f"cmp-{g}")
        store.upsert_campaigns([cmp.model_copy(update={"targeting": Targeting(age_min=50)})])
    store.upsert_campaigns([Campaign(campaign_id="any", advertiser_id="adv-0", name="x", bid=0.1)])
    store.upsert_ads([Ad(ad_id="any-1", campaign_id="any", title="x")])
    p = pipeline(store)
    r = p.recommend(user_id(0, 0), 3, now=NOW)  # age 20: only the open campaign's (fresh) ad is eligible
    assert [a.ad_id for a in r.ads] == ["any-1"] and r.eligible == 1
    store.upsert_campaigns([Campaign(campaign_id="any", advertiser_id="adv-0", name="x", bid=0.1, status="paused")])
    p.refresh_catalog()
    r = p.recommend(user_id(0, 0), 3, now=NOW)
    assert r.ads == [] and r.eligible == 0


def test_cpm_and_cpa_campaigns_compete_on_ecpm(store: Store) -> None:
    cmp = store.get_campaign("cmp-2")
    store.upsert_campaigns([cmp.model_copy(update={"pricing_model": PricingModel.CPM, "bid": 5000.0})])
    r = pipeline(store).recommend(user_id(0, 0), 3, now=NOW)
    assert r.ads[0].campaign_id == "cmp-2" and r.ads[0].pricing_model == "CPM"
    assert r.ads[0].price <= 5000.0 / 1000  # per impression
    assert r.ads[0].price == pytest.approx(r.ads[1].ecpm / 1000, rel=1e-4)  # pays the runner-up's eCPM


def test_model_swap_under_concurrent_requests_drops_nothing(store: Store) -> None:
    p = pipeline(store)
    errors: list[BaseException] = []
    versions: set[str | None] = set()
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                r = p.recommend(user_id(1, 3), 3, now=NOW)
                assert r.ads and r.ads[0].ad_id == ad_id(1, 3)
                versions.add(r.model_version)
            except BaseException as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(20):
        p.swap_model(blocks_model(f"v{i}"))
        time.sleep(0.005)
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert len(versions) > 1
    assert p.model is not None and p.model.version == "v19"


def test_cold_users_get_what_their_demographic_segment_clicks(store: Store) -> None:
    # u-0-1 and u-2-1 are women of 30: their segment (female|25-34) clicks ad-3-0 most, then ad-1-4.
    clicks = [("u-0-1", "ad-3-0"), ("u-2-1", "ad-3-0"), ("u-0-1", "ad-1-4")]
    store.append_events(
        [
            Event(event_id=f"k{n}", type=EventType.CLICK, user_id=u, ad_id=a, ts=NOW - 100)
            for n, (u, a) in enumerate(clicks)
        ]
    )
    assert store.segment_click_counts()["female|25-34"] == [("ad-3-0", 2), ("ad-1-4", 1)]
    store.upsert_users([User(user_id="new-f", gender="female", age=31), User(user_id="new-m", gender="male", age=31)])
    p = pipeline(store)
    r = p.recommend("new-f", 3, now=NOW)
    assert r.cold_start
    assert [(a.ad_id, a.source) for a in r.ads[:2]] == [("ad-3-0", "segment"), ("ad-1-4", "segment")]
    assert {a.source for a in p.recommend("new-m", 3, now=NOW).ads} == {"popular"}  # no clicks in that segment


def test_cpa_ecpm_uses_each_campaigns_logged_conversion_rate(store: Store) -> None:
    # cmp-1 and cmp-2 bid the same per conversion; the log has 10 clicks on each, 8 and 0 of them converted.
    for g in (1, 2):
        cmp = store.get_campaign(f"cmp-{g}")
        store.upsert_campaigns([cmp.model_copy(update={"pricing_model": PricingModel.CPA, "bid": 100.0})])
    events = []
    for g, converted in ((1, 8), (2, 0)):
        for j in range(10):
            kind = [EventType.CLICK] + ([EventType.CONVERSION] if j < converted else [])
            events += [
                Event(event_id=f"{t.name}-{g}-{j}", type=t, user_id=user_id(3, 0), ad_id=ad_id(g, j % PER), ts=NOW)
                for t in kind
            ]
    store.append_events(events)
    config = PipelineConfig(max_per_advertiser=10, category_decay=1.0, explore_share=0.0, pcvr_prior_clicks=10)
    base = (8 + 10 * 0.05) / (20 + 10)  # the log's rate, shrunk towards the configured prior 0.05
    expected = {"cmp-1": (8 + 10 * base) / 20, "cmp-2": (0 + 10 * base) / 20}
    r = pipeline(store, config).recommend("stranger", 20, now=NOW)  # cold: every ad gets the base pCTR
    cpa = [a for a in r.ads if a.pricing_model == "CPA"]
    assert {a.campaign_id for a in cpa} == {"cmp-1", "cmp-2"}
    for a in cpa:
        assert a.pcvr == pytest.approx(expected[a.campaign_id])
        assert a.ecpm == pytest.approx(100.0 * a.pctr * a.pcvr * 1000)
    order = [a.campaign_id for a in cpa]
    assert order == sorted(order, key=lambda c: c != "cmp-1")  # every cmp-1 ad outranks every cmp-2 ad


def test_calibration_saturates_without_overflow_on_extreme_scores() -> None:
    # The experiment's oracle arm found it: a score far below the fitted range overflowed np.exp (a RuntimeWarning,
    # an error under this suite's warning filter, which a long experiment met when retraining).
    import numpy as np

    from adrec.serving.pipeline import Calibrator

    identity = Calibrator(a=1.0, b=0.0, mean=0.0, std=1.0, n=1)
    np.testing.assert_allclose(identity(np.array([-1000.0, 0.0, 1000.0])), [0.0, 0.5, 1.0])
    scores = np.concatenate([np.full(200, -900.0), np.full(200, 900.0)])
    fitted = Calibrator.fit(scores, np.r_[np.zeros(190), np.ones(10), np.ones(150), np.zeros(50)])
    assert np.isfinite(fitted(scores)).all()
