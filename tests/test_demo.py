"""The demo's library half: model choice on validation only, and the ground-truth check."""

from __future__ import annotations

from pathlib import Path

import pytest

from adrec.data.datasets import load_dataset
from adrec.demo import fit_best, select_model, truth_check, truth_lift
from adrec.simulate import Market, SimulationConfig, simulate
from adrec.store import open_store


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
