"""MovieLens-100k for the cold-start and lookalike benchmarks: clicks, their times, movie texts, genres, users.

Loaded through adrec's own importer and :func:`~adrec.store.datasets.from_store` (clicks = ratings >= 4), so the
benchmarks see exactly what ``load_dataset("movielens:...")`` sees, plus what a split by item or user needs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from adrec.catalog import ad_text
from adrec.data.importers import run_import
from adrec.data.interactions import Interactions
from adrec.data.schema import User
from adrec.evaluation.ranking import evaluate_model
from adrec.models.base import IntArray, Recommender
from adrec.store import open_store
from adrec.store.datasets import from_store

ROOT = Path(__file__).resolve().parents[1]


def default_path() -> Path:
    return Path(os.environ.get("ADREC_DATA_DIR", ROOT.parent / "shared" / "data")) / "ml-100k"


@dataclass
class MovieLens:
    clicks: Interactions
    """Users with a click × every movie; 1 where the user rated the movie >= 4."""
    times: sp.csr_matrix
    """Time of each click, same sparsity as ``clicks``."""
    texts: list[str]
    """Per movie: title and genres (:func:`adrec.catalog.ad_text`)."""
    genres: list[list[str]]
    users: list[User]
    """The user record of each row of ``clicks``."""


def load(path: Path) -> MovieLens:
    if not path.is_dir():
        raise SystemExit(f"MovieLens-100k not found at {path}; pass --data or set ADREC_DATA_DIR")
    with open_store("sqlite://") as store:
        run_import("movielens", path, store, progress=False)
        data = from_store(store)
        ads = {a.ad_id: a for batch in store.iter_ads() for a in batch}
        records = {u.user_id: u for batch in store.iter_users() for u in batch}
    items = data.interactions.items.ids
    return MovieLens(
        clicks=data.interactions,
        times=data.timestamps,
        texts=[ad_text(ads[i]) for i in items],
        genres=[[g for g in ads[i].body.split("|") if g] for i in items],
        users=[records[u] for u in data.interactions.users.ids],
    )


class ScoreTable(Recommender):
    """Precomputed scores ``(n_users, n_items)`` behind the Recommender contract, so that every method of a
    benchmark is ranked and measured by the same :func:`~adrec.evaluation.ranking.evaluate_model`."""

    name: ClassVar[str] = "score-table"

    def __init__(self, *, scores: Any = None) -> None:
        self.scores = np.ascontiguousarray(scores, dtype=np.float32)
        self.n_users_, self.n_items_ = self.scores.shape

    def _fit(self, matrix: sp.csr_matrix) -> None:
        raise NotImplementedError("holds scores computed elsewhere")

    def _score_users(self, users: IntArray) -> npt.NDArray[np.float32]:
        return self.scores[users]


def measure(scores: npt.ArrayLike, seen: sp.spmatrix, relevant: sp.spmatrix, k: int = 20) -> dict[str, float]:
    """Recall@k and NDCG@k of score rows, ``seen`` items excluded, against ``relevant`` (same shapes)."""
    table = ScoreTable(scores=scores)
    shape = table.scores.shape
    result = evaluate_model(
        table,
        Interactions(sp.csr_matrix(seen, shape=shape)),
        Interactions(sp.csr_matrix(relevant, shape=shape)),
        ks=(k,),
        metric_names=("recall", "ndcg"),
    )
    return {**{key: round(v, 4) for key, v in result.values.items()}, "users": result.n_users}
