"""Off-policy evaluation on adrec's own logs: a policy's slot distribution from the one decision pipeline, logged
requests read back with their propensities, the store seen as it stood at each request, and estimates that recover
a candidate's true value from another policy's logs."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from serving_helpers import GROUPS, PER, SECRET, ad_id, blocks_interactions, blocks_model, fill, user_id
from typer.testing import CliRunner

from adrec.cli.main import app
from adrec.data.schema import EventType, utc_day
from adrec.exceptions import ValidationError
from adrec.feedback.tokens import TokenSigner
from adrec.models.artifact import Artifact
from adrec.models.base import get_model
from adrec.serving.auction import gsp_prices
from adrec.serving.explore import Exploration, fill_slots, slot_runs
from adrec.serving.pipeline import Pipeline, PipelineConfig, ServingModel
from adrec.serving.replay import AsOf, evaluate_logged, read_logged
from adrec.store import Feedback, Store, open_store

NOW = 1_790_035_200.0 + 12 * 3600
VALUES = np.array([10.0, 8.0, 7.0, 5.0, 4.0, 2.0])
ADVERTISER = np.array([0, 0, 0, 1, 2, 3])
CATEGORY = np.array([0, 0, 1, 1, 2, 2])
RULES = {"max_per_advertiser": 2, "category_decay": 0.7}
ADS = [ad_id(g, j) for g in range(len(GROUPS)) for j in range(PER)]
USERS = [user_id(g, j) for g in range(len(GROUPS)) for j in range(PER)]
# The true click probability of an ad in a slot for a user: high in the user's own group, low elsewhere, each ad a
# little different, times a position effect.
RATE = dict(zip(ADS, np.linspace(1.0, 0.6, len(ADS)).tolist(), strict=True))
POSITION = (1.0, 0.7, 0.5, 0.35)


def true_ctr(user: str, ad: str, slot: int) -> float:
    """``slot`` from 0."""
    same = user.split("-")[1] == ad.split("-")[1]
    return (0.3 if same else 0.03) * RATE[ad] * POSITION[slot]


@pytest.fixture
def store() -> Iterator[Store]:
    with open_store("sqlite://") as s:
        fill(s)
        yield s


def test_slot_runs_draw_the_propensities_fill_slots_logs() -> None:
    """The share of runs that put an ad in slot 1 converges to the closed form fill_slots logs there."""
    explore = Exploration("softmax", temperature=0.7, draws=10)
    picks = slot_runs(VALUES, ADVERTISER, CATEGORY, 3, explore, np.random.default_rng(1), 20_000, **RULES).picks
    assert picks.shape == (20_000, 3)
    share = np.bincount(picks[:, 0], minlength=len(VALUES)) / len(picks)
    for seed in range(6):
        f = fill_slots(VALUES, ADVERTISER, CATEGORY, 3, explore, np.random.default_rng(seed), **RULES)  # type: ignore[arg-type]
        p = f.propensity[0]
        assert abs(share[f.picks[0]] - p) < 4 * math.sqrt(p * (1 - p) / len(picks))
    # Within a run: no ad twice, at most two ads of advertiser 0.
    for row in picks[:500]:
        assert len(set(row.tolist())) == 3
        assert (ADVERTISER[row] == 0).sum() <= 2


def test_gsp_prices_of_several_lists_at_once_equal_each_list_alone() -> None:
    rng = np.random.default_rng(0)
    e = np.sort(rng.uniform(1, 20, (5, 4)), axis=1)[:, ::-1]
    nxt = rng.uniform(0, 1, 5)
    pricing = rng.choice(np.array(["CPC", "CPM", "CPA"]), (5, 4))
    bid, pctr, pcvr = rng.uniform(1, 30, (5, 4)), rng.uniform(0.01, 0.2, (5, 4)), rng.uniform(0.01, 0.5, (5, 4))
    both = gsp_prices(e, nxt, pricing, bid, pctr, pcvr, 0.5)
    for r in range(5):
        alone = gsp_prices(e[r], float(nxt[r]), pricing[r], bid[r], pctr[r], pcvr[r], 0.5)
        np.testing.assert_allclose(both[r], alone)


def test_an_exploiting_pipelines_distribution_is_what_it_serves(store: Store) -> None:
    p = Pipeline(store, blocks_model(), TokenSigner(SECRET), PipelineConfig(explore_share=0.0))
    for u in USERS[:8]:
        served = p.recommend(u, 3, now=NOW)
        dist = p.slot_distribution(u, 3, now=NOW)
        assert dist.runs == 1  # nothing random to draw
        assert dist.probability.sum(axis=0).tolist() == [1.0, 1.0, 1.0]
        for slot, ad in enumerate(served.ads):
            i = dist.ad_ids.index(ad.ad_id)
            assert dist.probability[i, slot] == 1.0
            assert dist.price[i, slot] == pytest.approx(ad.price, abs=1e-6)  # tokens carry 6 decimals
            assert dist.pctr[i] == pytest.approx(ad.pctr)
    assert p.outstanding.expected_cost(NOW)  # what recommend served is outstanding...
    quiet = Pipeline(store, blocks_model(), TokenSigner(SECRET), PipelineConfig(explore_share=0.0))
    quiet.slot_distribution(USERS[0], 3, now=NOW)
    assert not quiet.outstanding.expected_cost(NOW)  # ...a distribution serves nothing


def test_replayed_ads_count_against_budgets_as_the_served_ones_did(store: Store) -> None:
    """A replay keeps what the logging process kept outstanding (the expected cost of tokens whose events had not
    come yet, which throttles paced budgets), so the candidate sees the budgets the logged request saw."""
    config = PipelineConfig(explore_share=0.0)
    served = Pipeline(store, blocks_model(), TokenSigner(SECRET), config)
    replay = Pipeline(store, blocks_model(), TokenSigner(SECRET), config)
    for u in USERS[:6]:
        ads = served.recommend(u, 3, now=NOW).ads
        replay.slot_distribution(u, 3, now=NOW)  # replaying computes nothing outstanding by itself
        chances = [a.pctr for a in ads], [a.pcvr for a in ads]
        replay.remember_served(u, NOW, [a.ad_id for a in ads], [a.price for a in ads], *chances)
    want = served.outstanding.expected_cost(NOW)
    assert want and replay.outstanding.expected_cost(NOW) == pytest.approx(want, rel=1e-5)
    replay.remember_served(USERS[0], NOW, ["no-such-ad"], [1.0], [0.5], [0.1])  # gone from the catalogue: skipped
    assert replay.outstanding.expected_cost(NOW) == pytest.approx(want, rel=1e-5)


def test_an_exploring_pipelines_distribution_matches_the_propensities_it_logs(store: Store) -> None:
    config = PipelineConfig(exploration="softmax", temperature=1.0, max_per_advertiser=10, category_decay=1.0)
    signer = TokenSigner(SECRET)
    p = Pipeline(store, blocks_model(), signer, config)
    dist = p.slot_distribution(USERS[3], 3, now=NOW, runs=20_000)
    np.testing.assert_allclose(dist.probability.sum(axis=0), 1.0)
    for i in range(20):
        served = p.recommend(USERS[3], 3, now=NOW, request_id=f"{i:08x}")
        first = served.ads[0]
        logged = signer.verify(first.token, now=NOW).propensity
        assert logged is not None  # slot 1 of softmax: the exact probability
        got = dist.probability[dist.ad_ids.index(first.ad_id), 0]
        assert abs(got - logged) < 4 * math.sqrt(logged * (1 - logged) / 20_000) + 1e-9


def _serve_and_click(
    store: Store, pipeline: Pipeline, signer: TokenSigner, n: int, seed: int = 0, start: int = 0
) -> None:
    """``n`` requests served by ``pipeline`` from the fixture's users, their impressions and clicks (drawn from
    :func:`true_ctr`) sent to the ledger."""
    rng = np.random.default_rng(seed)
    feedback = []
    for r in range(start, start + n):
        now = NOW + 10.0 * r
        u = USERS[int(rng.integers(len(USERS)))]
        response = pipeline.recommend(u, 3, now=now, request_id=f"{seed:02x}{r:06x}")
        for slot, ad in enumerate(response.ads):
            d = signer.verify(ad.token, now=now)
            feedback.append(Feedback(f"i-{d.iid}", EventType.IMPRESSION, now, d))
            if rng.random() < true_ctr(u, ad.ad_id, slot):
                feedback.append(Feedback(f"c-{d.iid}", EventType.CLICK, now + 1, d))
    for start in range(0, len(feedback), 500):
        store.apply_feedback(feedback[start : start + 500])


def test_logged_slots_are_read_back_with_their_propensities_and_outcomes(store: Store) -> None:
    signer = TokenSigner(SECRET)
    explore = PipelineConfig(exploration="egreedy", epsilon=0.5, max_per_advertiser=10)
    _serve_and_click(store, Pipeline(store, blocks_model(), signer, explore), signer, 40)
    # Requests served without exploration carry no propensity: left out.
    _serve_and_click(store, Pipeline(store, blocks_model(), signer, PipelineConfig()), signer, 5, seed=1, start=40)
    logged = read_logged(store)
    assert logged.n_requests == 40 and len(logged) == 120
    assert logged.position.tolist() == [1, 2, 3] * 40
    assert (np.diff(logged.ts) >= 0).all()
    assert ((logged.propensity > 0) & (logged.propensity <= 1)).all()
    clicks = store.count_events(type=EventType.CLICK)
    assert logged.clicked.sum() < clicks  # the unexplored requests' clicks are not in it
    assert logged.charged.sum() == pytest.approx((logged.clicked * logged.price).sum())
    assert set(logged.pricing) == {"CPC"}
    events = next(store.iter_events(types=[EventType.IMPRESSION]))
    by_iid = dict(zip(events.request_id.tolist(), events.propensity.tolist(), strict=True))
    served = [iid for b in store.iter_served() for iid in b.iid.tolist() if not math.isnan(by_iid[iid])]
    assert sorted(by_iid[i] for i in served) == sorted(logged.propensity.tolist())
    window = read_logged(store, since=NOW + 100.0, until=NOW + 200.0)
    assert window.n_requests == 10 and window.ts.min() >= NOW + 100.0


def test_the_store_as_it_stood_at_a_request(store: Store) -> None:
    signer = TokenSigner(SECRET)
    _serve_and_click(store, Pipeline(store, blocks_model(), signer, PipelineConfig()), signer, 60)
    view = AsOf(store, NOW + 300.0)
    day = utc_day(NOW)
    view.now = NOW + 10**6
    got, want = view.campaign_spend(day), store.campaign_spend(day)
    assert got.keys() == want.keys()
    for c, (today, total) in want.items():
        assert got[c] == pytest.approx((today, total))
    view.now = NOW + 300.0
    before = {c: 0.0 for c in store.campaign_spend(day)}
    for b in store.iter_events(until=NOW + 300.0):
        for ad, cost in zip(b.ad_id.tolist(), b.cost.tolist(), strict=True):
            before[f"cmp-{ad.split('-')[1]}"] += cost
    assert {c: v[1] for c, v in view.campaign_spend(day).items()} == pytest.approx(
        {c: v for c, v in before.items() if v > 0}
    )
    user = USERS[0]
    assert all(ts < NOW + 300.0 for _, _, ts in view.delivery_times(user, 0.0))
    assert len(view.delivery_times(user, 0.0)) < len(store.delivery_times(user, 0.0))
    # What the pipeline learns from the log: as of the cutoff.
    clicks_before = sum(len(b) for b in store.iter_events(types=[EventType.CLICK], until=NOW + 300.0))
    counted = sum(n for ads in view.segment_click_counts().values() for _, n in ads)
    assert counted == clicks_before
    whole = AsOf(store, NOW + 10**6)
    assert whole.segment_click_counts() == store.segment_click_counts()
    with pytest.raises(AttributeError, match="never writes"):
        view.append_events([])  # type: ignore[attr-defined]


def test_a_candidates_value_is_recovered_from_an_exploring_policys_logs(store: Store) -> None:
    """The logger explores with a softmax; the candidate exploits the same model. The truth is what the candidate
    serves at the same requests, scored with the true click probabilities; every DR-family estimate's interval
    covers it, and the logger estimated on its own logs covers the logged CTR."""
    signer = TokenSigner(SECRET)
    logger = PipelineConfig(exploration="softmax", temperature=2.0, max_explore=3, max_per_advertiser=10)
    _serve_and_click(store, Pipeline(store, blocks_model(), signer, logger), signer, 1500)
    candidate = PipelineConfig(explore_share=0.0, max_per_advertiser=10)
    report = evaluate_logged(store, blocks_model(), candidate, runs=1, n_bootstrap=300, progress=False)
    logged = read_logged(store)
    truth = []
    decide = Pipeline(store, blocks_model(), TokenSigner(SECRET), candidate)
    for r in range(logged.n_requests):
        row = int(np.flatnonzero(logged.request == r)[0])
        ads = decide.slot_distribution(logged.user_id[row], 3, now=float(logged.ts[row]))
        picks = ads.probability.argmax(axis=0)
        user = logged.user_id[row]
        truth.append(np.mean([true_ctr(user, ads.ad_ids[a], s) for s, a in enumerate(picks.tolist())]))
    truth_ctr = float(np.mean(truth))
    assert report["overlap"]["mean_weight"] == pytest.approx(1.0, abs=0.1)  # the candidate is inside the support
    for name in ("ipw", "snipw", "dr", "sndr", "switch-dr"):
        e = report["estimates"]["ctr"][name]
        assert e["ci_low"] <= truth_ctr <= e["ci_high"], (name, e, truth_ctr)
        per_request = report["estimates"]["clicks_per_request"][name]
        assert per_request["estimate"] == pytest.approx(e["estimate"] * 3)
    assert abs(truth_ctr - report["logged"]["ctr"]) > 0.01  # the candidate differs from the logger: no free pass
    own = evaluate_logged(store, blocks_model(), logger, runs=400, n_bootstrap=300, progress=False)
    e = own["estimates"]["ctr"]["snipw"]
    assert e["ci_low"] <= own["logged"]["ctr"] <= e["ci_high"]
    assert own["overlap"]["mean_weight"] == pytest.approx(1.0, abs=0.1)


def test_a_request_served_before_the_window_ends_keeps_a_late_impression(store: Store) -> None:
    """An ad served before ``until`` whose impression was recorded after it still has its propensity: the request
    is not dropped."""
    signer = TokenSigner(SECRET)
    p = Pipeline(store, blocks_model(), signer, PipelineConfig(exploration="egreedy", epsilon=0.5))
    ads = p.recommend(USERS[0], 2, now=NOW, request_id="0000aaaa").ads
    deliveries = [signer.verify(a.token, now=NOW) for a in ads]
    store.apply_feedback([Feedback(f"i-{d.iid}", EventType.IMPRESSION, NOW + 120, d) for d in deliveries])
    logged = read_logged(store, since=NOW, until=NOW + 60)
    assert logged.n_requests == 1 and len(logged) == 2


def test_the_simulators_history_is_read_as_requests_and_its_approximate_propensities_are_flagged() -> None:
    """The simulator numbers every impression (``sim{seed}-{n}``); a request's slots share its user and time."""
    from adrec.simulate import SimulationConfig, simulate

    config = SimulationConfig(
        seed=2, n_users=200, n_advertisers=4, n_campaigns=8, n_ads=40, n_impressions=2_000, days=1
    )
    with open_store("sqlite://") as s:
        simulate(config, [s], progress=False)
        logged = read_logged(s)
        assert len(logged) > 1_000
        assert logged.n_requests == len(logged) // config.slots
        starts = np.flatnonzero(np.r_[True, np.diff(logged.request) != 0])
        assert (logged.position[starts] == 1).all()
        report = evaluate_logged(s, None, PipelineConfig(), n_bootstrap=20, progress=False)
        assert report["requests"] == logged.n_requests
        flagged = report["overlap"]["mean_weight"] > 1.1  # E[pi / mu] is at most 1 with true slot propensities
        assert flagged  # the simulator's single-draw propensities understate the slot marginals
        assert [("single-draw approximations" in w) for w in report["warnings"]] == ([True] if flagged else [])


def test_a_bad_stored_ad_row_is_left_out_not_fatal(store: Store) -> None:
    from sqlalchemy import text

    signer = TokenSigner(SECRET)
    logger = PipelineConfig(exploration="egreedy", epsilon=0.5, max_per_advertiser=10)
    _serve_and_click(store, Pipeline(store, blocks_model(), signer, logger), signer, 30)
    with store._engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(text("UPDATE ads SET price = -5 WHERE ad_id = :a"), {"a": ADS[3]})
    report = evaluate_logged(store, blocks_model(), PipelineConfig(), n_bootstrap=20, progress=False)
    assert report["requests"] == 30


def test_a_log_without_propensities_is_refused_with_the_reason(store: Store) -> None:
    signer = TokenSigner(SECRET)
    _serve_and_click(store, Pipeline(store, blocks_model(), signer, PipelineConfig()), signer, 5)
    with pytest.raises(ValidationError, match="exploration"):
        evaluate_logged(store, blocks_model(), PipelineConfig(), progress=False)


def test_adrec_ope_estimates_a_saved_candidate_from_the_store(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'adrec.db'}"
    data = blocks_interactions()
    folder = tmp_path / "candidate"
    Artifact.create(get_model("itemknn").fit(data), data).save(folder)
    with open_store(db) as s:
        fill(s)
        signer = TokenSigner(SECRET)
        logger = PipelineConfig(exploration="egreedy", epsilon=0.5, max_per_advertiser=10)
        _serve_and_click(s, Pipeline(s, ServingModel.load(folder, s), signer, logger), signer, 200)
    runner = CliRunner()
    out = tmp_path / "ope.json"
    args = ["ope", "--db", db, "--policy-model", str(folder), "--serving", "explore_share=0", "--bootstrap", "50"]
    result = runner.invoke(app, [*args, "--no-progress", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["requests"] == 200 and report["policy"]["serving"] == {"explore_share": 0.0}
    for metric in ("ctr", "clicks_per_request", "revenue_per_request"):
        assert set(report["estimates"][metric]) == {"dm", "ipw", "snipw", "dr", "sndr", "switch-dr", "dros"}
    assert "snipw" in result.output
    bad = runner.invoke(app, ["ope", "--db", db, "--policy-model", str(folder), "--serving", "temprature=2"])
    assert bad.exit_code == 1 and "temprature" in bad.output
    missing = runner.invoke(app, ["ope", "--db", db])
    assert missing.exit_code == 1 and "--policy-model" in missing.output
    assert "policy-model" in runner.invoke(app, ["ope"]).output  # no arguments: the help
    mixed = runner.invoke(app, ["ope", "--db", db, "obd", "--data", str(tmp_path)])
    assert mixed.exit_code == 1 and "--db belong to `adrec ope --db URL" in mixed.output
