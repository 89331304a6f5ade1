"""The pipeline ranks with a click model when the served model carries one: pCTR comes from the user, ad and
context features (built as the batch trainer builds them), every candidate scored at the reference position."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from serving_helpers import GROUPS, PER, SECRET, ad_id, blocks_interactions, blocks_model, fill, user_id

from adrec.data.schema import PricingModel
from adrec.feedback.tokens import TokenSigner
from adrec.models.artifact import Artifact
from adrec.models.base import get_model
from adrec.models.ctr import REFERENCE_POSITION, ClickModel, Examples, FeatureSpec, get_click_model
from adrec.serving.pipeline import CLICK_MODEL_DIR, CONVERSION_MODEL_DIR, Pipeline, PipelineConfig, ServingModel
from adrec.store import Store, open_store

NOW = 1_790_035_200.0 + 12 * 3600
NEUTRAL = PipelineConfig(max_per_advertiser=10, category_decay=1.0, explore_share=0.0)
FAVOURITE = 2
"""Users click the ads of this group far more than the others, whatever their own group."""
CONVERTS = 1
"""Clicks on the ads of this group convert far more often than on the others."""


@pytest.fixture
def store() -> Iterator[Store]:
    with open_store("sqlite://") as s:
        fill(s)
        yield s


def _trainer_features(store: Store, spec: FeatureSpec, users: list[str], ads: list[str], ts: float) -> Examples:
    """Features of (users[i], ads[i]) built the batch trainer's way: every user and ad encoded once, rows
    assembled by index."""
    all_users = [p for batch in store.iter_profiles() for p in batch]
    all_ads = [a for batch in store.iter_ads() for a in batch]
    campaigns = {c.campaign_id: c for batch in store.iter_campaigns() for c in batch}
    user_row = {p.user_id: i for i, p in enumerate(all_users)}
    ad_row = {a.ad_id: i for i, a in enumerate(all_ads)}
    return spec.assemble(
        spec.users([p.user for p in all_users], [p.behaviour for p in all_users]),
        [user_row[u] for u in users],
        spec.ads(all_ads, campaigns),
        [ad_row[a] for a in ads],
        spec.context([ts], None),
        REFERENCE_POSITION,
    )


def _favouring(store: Store, group: int, rates: tuple[float, float], n: int, seed: int) -> ClickModel:
    """A logistic model trained on random (user, ad) pairs of the checkerboard, positive with ``rates[0]`` on the
    ads of ``group`` and ``rates[1]`` elsewhere, whoever the user."""
    spec = FeatureSpec(hash_bits=16)
    rng = np.random.default_rng(seed)
    users = [user_id(int(g), int(j)) for g, j in zip(rng.integers(0, 4, n), rng.integers(0, PER, n), strict=True)]
    groups = rng.integers(0, len(GROUPS), n)
    ads = [ad_id(int(g), int(j)) for g, j in zip(groups, rng.integers(0, PER, n), strict=True)]
    x = _trainer_features(store, spec, users, ads, NOW)
    p = np.where(groups == group, *rates)
    labelled = dataclasses.replace(x, label=(rng.random(n) < p).astype(np.float32))
    return get_click_model("lr", epochs=3).fit(labelled, spec=spec)


@pytest.fixture
def click(store: Store) -> ClickModel:
    """Clicks favour group FAVOURITE's ads, at every position."""
    return _favouring(store, FAVOURITE, (0.2, 0.02), 40_000, seed=0)


@pytest.fixture
def conversion(store: Store) -> ClickModel:
    """Clicks convert far more often on group CONVERTS's ads."""
    return _favouring(store, CONVERTS, (0.3, 0.03), 30_000, seed=1)


def test_without_a_click_model_the_retrieval_score_ranks(store: Store) -> None:
    r = Pipeline(store, blocks_model(), TokenSigner(SECRET), NEUTRAL).recommend(user_id(0, 0), 3, now=NOW)
    assert r.ads[0].ad_id == ad_id(0, 0)


def test_the_click_model_ranks_the_candidates_the_retrieval_model_found(store: Store, click: ClickModel) -> None:
    model = dataclasses.replace(blocks_model(), click=click)
    p = Pipeline(store, model, TokenSigner(SECRET), NEUTRAL)
    for g in range(len(GROUPS)):
        r = p.recommend(user_id(g, 1), 5, now=NOW)
        assert all(a.ad_id.startswith(f"ad-{FAVOURITE}-") for a in r.ads), [a.ad_id for a in r.ads]
        assert all(0.1 < a.pctr < 0.3 for a in r.ads)  # calibrated near the favourite group's 20 %
        assert r.ads[0].source == "model"  # retrieval still found them


def test_served_pctr_equals_the_click_model_on_the_trainers_features(store: Store, click: ClickModel) -> None:
    """No training/serving skew: what the pipeline predicts for (user, ad, now) is what the model predicts for
    the features the batch trainer builds for the same triple."""
    p = Pipeline(store, dataclasses.replace(blocks_model(), click=click), TokenSigner(SECRET), NEUTRAL)
    for g in range(len(GROUPS)):
        user = user_id(g, 3)
        r = p.recommend(user, 8, now=NOW)
        ads = [a.ad_id for a in r.ads]
        offline = click.predict(_trainer_features(store, click.spec_, [user] * len(ads), ads, NOW))
        np.testing.assert_allclose([a.pctr for a in r.ads], offline, rtol=1e-6)


def test_an_unknown_user_and_a_new_ad_still_get_a_pctr(store: Store, click: ClickModel) -> None:
    from adrec.data.schema import Ad

    store.upsert_ads([Ad(ad_id="ad-new", campaign_id=f"cmp-{FAVOURITE}", title="new", category="travel")])
    p = Pipeline(store, dataclasses.replace(blocks_model(), click=click), TokenSigner(SECRET), NEUTRAL)
    r = p.recommend("someone-new", 25, now=NOW)
    assert r.cold_start and r.ads
    assert all(np.isfinite(a.pctr) and 0 < a.pctr < 1 for a in r.ads)


def test_a_model_folder_with_ctr_and_cvr_subfolders_serves_both(
    store: Store, click: ClickModel, conversion: ClickModel, tmp_path: Path
) -> None:
    data = blocks_interactions()
    folder = Artifact.create(get_model("popularity").fit(data), data).save(tmp_path / "blocks")
    click.save(folder / CLICK_MODEL_DIR)
    served = ServingModel.load(tmp_path / "blocks", store)
    assert served.click is not None and served.click.name == "lr" and served.conversion is None
    r = Pipeline(store, served, TokenSigner(SECRET), NEUTRAL).recommend(user_id(0, 0), 3, now=NOW)
    assert r.ads[0].ad_id.startswith(f"ad-{FAVOURITE}-")
    conversion.save(folder / CONVERSION_MODEL_DIR)
    assert ServingModel.load(tmp_path / "blocks", store).conversion is not None


def test_cpa_ecpm_uses_the_conversion_models_pcvr_for_this_user_and_ad(
    store: Store, click: ClickModel, conversion: ClickModel
) -> None:
    campaigns = [c for batch in store.iter_campaigns() for c in batch]
    store.upsert_campaigns([c.model_copy(update={"pricing_model": PricingModel.CPA, "bid": 20.0}) for c in campaigns])
    plain = Pipeline(store, dataclasses.replace(blocks_model(), click=click), TokenSigner(SECRET), NEUTRAL)
    served = dataclasses.replace(blocks_model(), click=click, conversion=conversion)
    p = Pipeline(store, served, TokenSigner(SECRET), NEUTRAL)
    user = user_id(0, 2)
    before = plain.recommend(user, 20, now=NOW)
    assert len({round(a.pcvr, 9) for a in before.ads}) == 1  # one logged campaign rate (the prior: no events)
    r = p.recommend(user, 20, now=NOW)
    ads = [a.ad_id for a in r.ads]
    offline = conversion.predict(_trainer_features(store, conversion.spec_, [user] * len(ads), ads, NOW))
    np.testing.assert_allclose([a.pcvr for a in r.ads], offline, rtol=1e-6)
    for a in r.ads:
        assert a.ecpm == pytest.approx(a.bid * a.pctr * a.pcvr * 1000.0)
    # A click on group CONVERTS's ads converts ten times as often: its eCPM beats the groups that neither
    # convert nor get clicked more.
    by_group = {g: max(a.ecpm for a in r.ads if a.ad_id.startswith(f"ad-{g}-")) for g in range(len(GROUPS))}
    assert by_group[CONVERTS] > by_group[0] and by_group[CONVERTS] > by_group[3]


def test_a_click_model_gone_nan_never_prices_an_ad(store: Store, click: ClickModel) -> None:
    import torch

    with torch.no_grad():
        click.net_.dense_linear.bias.fill_(float("nan"))  # type: ignore[attr-defined]
    p = Pipeline(store, dataclasses.replace(blocks_model(), click=click), TokenSigner(SECRET), NEUTRAL)
    # Every candidate's eCPM is NaN, which clears no reserve: nothing is served (or charged) rather than ads
    # priced from NaN.
    assert p.recommend(user_id(1, 1), 5, now=NOW).ads == []


def test_a_fresh_ad_competes_on_the_click_models_pctr(store: Store, click: ClickModel) -> None:
    """An ad no retrieval model knows gets its pCTR from its content through the click model, so it wins slots on
    eCPM like any candidate; without a click model only the exploration share shows it (its pCTR is the base
    rate)."""
    from adrec.data.schema import Ad, Campaign

    favourite = f"adv-{FAVOURITE}"
    store.upsert_campaigns(
        [Campaign(campaign_id="cmp-new", advertiser_id=favourite, name="new", pricing_model=PricingModel.CPC, bid=3.0)]
    )
    group = store.get_ad(ad_id(FAVOURITE, 0))
    store.upsert_ads(
        [Ad(ad_id="ad-new", campaign_id="cmp-new", title="new", category=group.category, brand=group.brand)]
    )
    user = user_id(0, 1)
    p = Pipeline(store, dataclasses.replace(blocks_model(), click=click), TokenSigner(SECRET), NEUTRAL)
    r = p.recommend(user, 3, now=NOW)
    assert r.ads[0].ad_id == "ad-new" and r.ads[0].source == "explore", [a.ad_id for a in r.ads]
    assert r.ads[0].pctr > 0.05  # the favourite group's content, not the base rate
    without = Pipeline(store, blocks_model(), TokenSigner(SECRET), NEUTRAL).recommend(user, 3, now=NOW)
    assert "ad-new" not in [a.ad_id for a in without.ads]


def test_at_most_max_fresh_candidates_fresh_ads_enter_the_most_promising_first(store: Store, click: ClickModel) -> None:
    """A large catalogue can hold thousands of fresh ads, each a pass through the click model per request: capped,
    the eligible ones enter in the order of the eCPM their pCTR gives for a request nothing is known about (the
    click model's; the base rate without one), and the rest never compete."""
    from adrec.data.schema import Ad, Campaign

    favourite, other = store.get_ad(ad_id(FAVOURITE, 0)), store.get_ad(ad_id(0, 0))
    bids = {"new-a": (favourite, 1.0), "new-b": (favourite, 2.0), "new-c": (other, 1.5), "new-d": (favourite, 0.3)}
    owner = {FAVOURITE: f"adv-{FAVOURITE}", 0: "adv-0"}  # new campaigns of the groups' advertisers
    store.upsert_campaigns(
        [
            Campaign(
                campaign_id=f"cmp-{a}",
                advertiser_id=owner[FAVOURITE if like is favourite else 0],
                name=a,
                pricing_model=PricingModel.CPC,
                bid=b,
            )
            for a, (like, b) in bids.items()
        ]
    )
    store.upsert_ads(
        [
            Ad(ad_id=a, campaign_id=f"cmp-{a}", title=a, category=like.category, brand=like.brand)
            for a, (like, _) in bids.items()
        ]
    )
    capped = dataclasses.replace(NEUTRAL, max_fresh_candidates=2)
    model = dataclasses.replace(blocks_model(), click=click)
    p = Pipeline(store, model, TokenSigner(SECRET), capped)
    # pCTR about 0.14 for the favourite group's content and 0.06 for the other's, for a request nothing is known
    # about: eCPM 0.28, 0.14, 0.09 and 0.04 per click (new-b, new-a, new-c, new-d).
    assert p._binding.catalog.ad_ids[p._binding.fresh_order].tolist() == ["new-b", "new-a", "new-c", "new-d"]
    shown = {a.ad_id for u in range(PER) for a in p.recommend(user_id(1, u), 8, now=NOW).ads if a.source == "explore"}
    assert shown == {"new-b", "new-a"}
    uncapped = Pipeline(store, model, TokenSigner(SECRET), NEUTRAL)
    assert not len(uncapped._binding.fresh_order)  # no cap: every eligible fresh ad enters, unordered
    everyone = {a.ad_id for u in range(PER) for a in uncapped.recommend(user_id(1, u), 8, now=NOW).ads}
    assert everyone & set(bids) == {"new-b", "new-a", "new-c"}  # new-c wins a slot once it may compete
    # Without a click model a fresh ad's pCTR is the base rate: the order is the bids'.
    plain = Pipeline(store, blocks_model(), TokenSigner(SECRET), capped)
    assert plain._binding.catalog.ad_ids[plain._binding.fresh_order].tolist() == ["new-b", "new-c", "new-a", "new-d"]
