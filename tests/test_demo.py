"""The demo's library half: model choice on validation only, and the ground-truth check."""

from __future__ import annotations

from pathlib import Path

import pytest

from adrec.demo import fit_best, select_model, truth_check, truth_lift
from adrec.simulate import Market, SimulationConfig, simulate
from adrec.store import open_store
from adrec.store.datasets import load_dataset


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp("demo")
    url = f"sqlite:///{root}/m.db"
    config = SimulationConfig(seed=5, n_users=600, n_advertisers=6, n_campaigns=12, n_ads=80, n_impressions=80_000)
    with open_store(url) as store:
        simulate(config, store, out_dir=root / "truth", progress=False)
    return url, root / "truth"


def test_select_model_uses_validation_and_reports_every_candidate(market: tuple[str, Path]) -> None:
    url, _ = market
    data = load_dataset(f"store:{url}")
    best, validation, test = select_model(data, ["popularity", "itemknn"], seed=1)
    assert validation.n_train < data.train.nnz  # chosen on a split carved from train
    assert validation.n_test < data.train.nnz
    assert best == max(validation.results, key=lambda r: r.metrics["ndcg@10"]).model
    assert [r.model for r in test.results] == ["popularity", "itemknn"]


def test_recommended_ads_have_a_higher_true_ctr_than_average(market: tuple[str, Path]) -> None:
    url, truth = market
    data = load_dataset(f"store:{url}")
    model = fit_best("itemknn", data.train)
    rec, everything = truth_lift(model, data.train, Market.load(truth))
    assert rec > 1.2 * everything
    rows = truth_check(model, data.train, Market.load(truth), data.item_titles, data.train.users.ids[:2], k=3)
    assert [len(r.ads) for r in rows] == [3, 3]
    seen = {data.train.items.ids[i] for i in data.train.matrix[0].indices}
    assert not seen & set(rows[0].ads)


def test_a_new_ad_is_recommended_from_its_text_to_users_who_like_it(market: tuple[str, Path]) -> None:
    from adrec.catalog import ad_text
    from adrec.demo import cold_ad_check

    url, truth = market
    data = load_dataset(f"store:{url}")
    with open_store(url) as store:
        ads = {a.ad_id: a for a in store.get_ads(data.train.items.ids)}
    texts = [ad_text(ads[i]) if i in ads else "" for i in data.train.items.ids]
    check = cold_ad_check(data.train, Market.load(truth), texts, data.item_titles, encoder_kind="tfidf")
    assert check.clicks_hidden > 0 and len(check.neighbours) == 3
    assert check.recommended_to > 0
    assert check.audience == data.train.n_users // 10
    assert check.true_ctr_audience > 1.2 * check.true_ctr_all


def test_lookalike_audience_clicks_the_seed_category_more(market: tuple[str, Path]) -> None:
    from adrec.demo import lookalike_check

    url, truth = market
    data = load_dataset(f"store:{url}")
    assert data.item_categories is not None
    model = fit_best("itemknn", data.train)
    check = lookalike_check(
        model, data.train, Market.load(truth), data.item_categories, data.category_names, n_seeds=20, size=60
    )
    assert check.size == 60 and check.vectors == "interaction rows"
    assert check.true_ctr_audience > 1.1 * check.true_ctr_others
