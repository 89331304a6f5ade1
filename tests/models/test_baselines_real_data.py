"""Real-data sanity check of the baselines and graph filters on MovieLens-100k (``u1.base`` / ``u1.test``).

Every personalised model must beat the most-popular list, and the known ordering of the families must hold.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from adrec.data.interactions import Interactions
from adrec.evaluation.ranking import evaluate_model
from adrec.models import get_model
from adrec_testdata import require_dataset

MODELS = {
    "itemknn": {},
    "ease": {"regularization": 200.0},
    "bpr": {"epochs": 10, "batch_size": 4096, "learning_rate": 0.01, "verbose": False},
    "gfcf": {"factors": 64},
    "bspm": {"factors": 64, "beta": 0.1, "sharpen_time": 1.0},
}


def read_split(path: Path) -> tuple[Interactions, Interactions]:
    """u1.base / u1.test (``user<TAB>item<TAB>rating<TAB>time``, 1-based ids) as implicit feedback."""
    tables = [np.loadtxt(path / name, dtype=np.int64, usecols=(0, 1)) - 1 for name in ("u1.base", "u1.test")]
    shape = (943, 1682)
    train, test = (Interactions.from_pairs(t[:, 0], t[:, 1], shape) for t in tables)
    return train, test


@pytest.fixture(scope="module")
def movielens() -> tuple[Interactions, Interactions]:
    return read_split(require_dataset("ml-100k", "u1.base", "u1.test"))


@pytest.fixture(scope="module")
def popularity_ndcg(movielens: tuple[Interactions, Interactions]) -> float:
    train, test = movielens
    return evaluate_model(get_model("popularity").fit(train), train, test)["ndcg@20"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_beats_popularity_on_movielens(
    name: str, movielens: tuple[Interactions, Interactions], popularity_ndcg: float
) -> None:
    train, test = movielens
    result = evaluate_model(get_model(name, **MODELS[name]).fit(train), train, test)
    assert result.n_users == 459
    assert result["ndcg@20"] > 1.1 * popularity_ndcg, (name, result.values, popularity_ndcg)
