"""Vectorised eligibility against a plain reading of the rules, one campaign and one user at a time."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import numpy as np
import pytest

from adrec.data.schema import Ad, Campaign, Device, FrequencyCap, Gender, Targeting, User
from adrec.serving.catalog import CatalogSnapshot, RequestContext
from adrec.serving.pipeline import rerank

REGIONS = ("north", "south", "east")
TAGS = ("shoes", "travel", "games", "food")
NOW = datetime(2026, 11, 4, 15, 30, tzinfo=UTC).timestamp()  # a Wednesday, 15:30 UTC


def random_targeting(rng: random.Random) -> Targeting:
    def some(values: tuple, p: float = 0.4) -> frozenset:  # type: ignore[type-arg]
        return frozenset(v for v in values if rng.random() < 0.5) if rng.random() < p else frozenset()

    age_min = rng.choice([None, 18, 25, 40])
    age_max = rng.choice([None, 30, 60]) if age_min is None or age_min <= 30 else None
    include = some(TAGS, 0.3)
    return Targeting(
        age_min=age_min,
        age_max=age_max,
        genders=some(tuple(Gender)),
        regions=some(REGIONS),
        city_tiers=some((1, 2, 3, 4, 5, 6)),
        devices=some(tuple(Device)),
        interests_include=include,
        interests_exclude=some(tuple(t for t in TAGS if t not in include), 0.2),
        hours=some(tuple(range(24)), 0.2),
        days_of_week=some(tuple(range(7)), 0.2),
    )


def admits(t: Targeting, user: User | None, interests: set[str], ctx: RequestContext) -> bool:
    """The rules of one campaign, read literally."""
    age = user.age if user else None
    if (t.age_min is not None or t.age_max is not None) and (
        age is None or not (t.age_min or 0) <= age <= (t.age_max if t.age_max is not None else 999)
    ):
        return False
    if t.genders and (user.gender if user else Gender.UNKNOWN) not in t.genders:
        return False
    if t.devices and (ctx.device or (user.device if user else Device.UNKNOWN)) not in t.devices:
        return False
    if t.city_tiers and (user.city_tier if user else None) not in t.city_tiers:
        return False
    if t.regions and (ctx.region or (user.region if user else None)) not in t.regions:
        return False
    if t.interests_include and not t.interests_include & interests:
        return False
    if t.interests_exclude & interests:
        return False
    if t.hours and ctx.hour not in t.hours:
        return False
    return not (t.days_of_week and ctx.day_of_week not in t.days_of_week)


def random_user(rng: random.Random, i: int) -> User:
    return User(
        user_id=f"u{i}",
        age=rng.choice([None, 16, 22, 27, 35, 45, 70, 120]),
        gender=rng.choice(list(Gender)),
        device=rng.choice(list(Device)),
        region=rng.choice([None, "west", *REGIONS]),
        city_tier=rng.choice([None, 1, 2, 3, 6]),
    )


def test_targeting_tables_agree_with_the_rules_read_one_campaign_at_a_time() -> None:
    rng = random.Random(7)
    campaigns = [
        Campaign(campaign_id=f"c{i}", advertiser_id=f"a{i % 5}", name="c", bid=1.0, targeting=random_targeting(rng))
        for i in range(300)
    ]
    ads = [Ad(ad_id=f"ad{i}", campaign_id=f"c{i % 300}", title="t") for i in range(600)]
    cat = CatalogSnapshot.build(campaigns, ads)
    timed = cat.timed_campaigns(NOW, cat.spend_array({}))
    # No schedule, budget or status rules here: `timed` holds the hour and day rules only.
    checked = 0
    for i in range(200):
        user = None if i % 25 == 0 else random_user(rng, i)
        interests = {t for t in TAGS if rng.random() < 0.3}
        ctx = RequestContext(
            NOW, device=rng.choice([None, Device.MOBILE]), region=rng.choice([None, "south", "nowhere"])
        )
        got = cat.eligible_campaigns(user, interests, ctx, timed)
        want = np.array([admits(c.targeting, user, interests, ctx) for c in campaigns])
        assert (got == want).all(), (user, interests, ctx, np.flatnonzero(got != want)[:5])
        checked += int(want.sum())
    assert checked > 1000  # the fixtures admit many pairs: the comparison is not vacuous


def test_eligibility_per_ad_agrees_with_the_mask_and_the_count_with_both() -> None:
    campaigns = [
        Campaign(
            campaign_id=f"c{i}",
            advertiser_id="a",
            name="c",
            bid=1.0,
            targeting=Targeting(genders=frozenset({Gender.FEMALE})) if i % 3 == 0 else Targeting(),
            frequency=FrequencyCap(per_ad=1, per_campaign=3 if i == 1 else None, window_s=3600),
        )
        for i in range(6)
    ]
    ads = [
        Ad(ad_id=f"ad{i}", campaign_id=f"c{i % 6}", title="t", status="paused" if i == 7 else "active")
        for i in range(30)
    ]
    ads.append(Ad(ad_id="orphan", campaign_id="gone", title="t"))
    cat = CatalogSnapshot.build(campaigns, ads)
    # ad4 (campaign c4) seen once: per-ad cap; campaign c1 seen 3 times: all its ads capped; one delivery too old.
    deliveries = [("c4", "ad4", NOW - 60), ("c1", "ad1", NOW - 50), ("c1", "ad7", NOW - 40), ("c1", "ad13", NOW - 30)]
    deliveries.append(("c2", "ad2", NOW - 7200))
    user = User(user_id="m", gender=Gender.MALE)
    e = cat.eligibility(user, [], RequestContext(NOW), cat.timed_campaigns(NOW, cat.spend_array({})), deliveries)
    every = np.arange(cat.n_ads)
    assert (e[every] == e.mask).all()
    assert e.count() == int(e.mask.sum())
    eligible = {cat.ads[i].ad_id for i in np.flatnonzero(e.mask)}
    expected = {
        f"ad{i}"
        for i in range(30)
        if i % 6 not in (0, 3)  # campaigns c0 and c3 target women
        and i % 6 != 1  # campaign c1's cap is reached
        and i not in (4, 7)  # ad4 was seen (per-ad cap 1), ad7 is paused
    }
    assert eligible == expected
    assert "ad2" in eligible  # its delivery is outside the window


@pytest.mark.parametrize("spent_today", [0.0, 40.0, 100.0])
def test_timed_campaigns_apply_schedule_budget_pacing_and_hours(spent_today: float) -> None:
    day_start = NOW - (NOW % 86_400)
    campaigns = [
        Campaign(campaign_id="open", advertiser_id="a", name="c", bid=1.0),
        Campaign(
            campaign_id="later", advertiser_id="a", name="c", bid=1.0, start=datetime.fromtimestamp(NOW + 60, UTC)
        ),
        Campaign(campaign_id="paced", advertiser_id="a", name="c", bid=1.0, daily_budget=100.0, pacing="even"),
        Campaign(campaign_id="asap", advertiser_id="a", name="c", bid=1.0, daily_budget=100.0, pacing="asap"),
        Campaign(
            campaign_id="mornings", advertiser_id="a", name="c", bid=1.0, targeting=Targeting(hours=frozenset({9, 10}))
        ),
    ]
    cat = CatalogSnapshot.build(campaigns, [])
    spent = cat.spend_array({"paced": (spent_today, spent_today), "asap": (spent_today, spent_today)})
    ok = dict(zip([c.campaign_id for c in campaigns], cat.timed_campaigns(NOW, spent).tolist(), strict=True))
    share = (NOW - day_start) / 86_400 + 0.02  # 15:30 -> about 67 % of the day, plus the slack
    assert ok == {
        "open": True,
        "later": False,
        "paced": spent_today < 100.0 * share,
        "asap": spent_today < 100.0,
        "mornings": False,
    }


def rerank_reference(
    cat: CatalogSnapshot, cand: np.ndarray, values: np.ndarray, k: int, cap: int, decay: float
) -> list[int]:
    """Every slot: decay every open ad's eCPM by its category's count, mask capped advertisers, take the argmax."""
    pool = np.argsort(-values, kind="stable")[: max(k * 10, 50)]
    adv, category = cat.ad_advertiser_code[cand[pool]], cat.ad_category_code[cand[pool]]
    adv_count: dict[int, int] = {}
    cat_count: dict[int, int] = {}
    taken: set[int] = set()
    out: list[int] = []
    for _ in range(min(k, len(pool))):
        adjusted = [
            -np.inf
            if j in taken or adv_count.get(adv[j], 0) >= cap
            else values[pool[j]] * decay ** cat_count.get(category[j], 0)
            for j in range(len(pool))
        ]
        best = int(np.argmax(adjusted))
        if not np.isfinite(adjusted[best]):
            break
        taken.add(best)
        adv_count[adv[best]] = adv_count.get(adv[best], 0) + 1
        cat_count[category[best]] = cat_count.get(category[best], 0) + 1
        out.append(int(pool[best]))
    return out


@pytest.mark.parametrize("seed", range(20))
def test_rerank_stops_early_yet_picks_what_the_full_argmax_would(seed: int) -> None:
    rng = np.random.default_rng(seed)
    campaigns = [Campaign(campaign_id=f"c{i}", advertiser_id=f"a{i % 7}", name="c", bid=1.0) for i in range(20)]
    ads = [Ad(ad_id=f"ad{i}", campaign_id=f"c{i % 20}", title="t", category=f"k{i % 4}") for i in range(200)]
    cat = CatalogSnapshot.build(campaigns, ads)
    cand = rng.choice(200, size=int(rng.integers(1, 120)), replace=False)
    values = np.round(rng.gamma(2.0, 1.0, len(cand)), 1)  # rounded: ties happen
    k = int(rng.integers(1, 15))
    cap, decay = int(rng.integers(1, 4)), float(rng.choice([0.3, 0.7, 1.0]))
    order = np.argsort(-values, kind="stable")
    got = rerank(cat, cand, values, order, k, max_per_advertiser=cap, category_decay=decay)
    assert got == rerank_reference(cat, cand, values, k, cap, decay)
