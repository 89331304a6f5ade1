"""Reference arms that know (or ignore) the truth, served through the same pipeline as every other arm.

Each is a :class:`~adrec.models.base.Recommender` over the market's users and ads with no embeddings, so the
pipeline scores the eligible ads exactly, and a calibrator that turns its score into the pCTR it means:

* ``oracle`` scores each ad by the user's **true** click logit at the top position, so pCTR is the true CTR and
  eCPM is the true expected value per impression: the upper bound no learned model can beat on relevance;
* ``random`` draws a logit per request and ad around the market's base rate: relevance ignored, the auction
  (bids, budgets, caps) still applies.

Non-consenting users get the pipeline's non-behavioural path in every arm, these included.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from adrec.data.interactions import IdMap
from adrec.models.artifact import Artifact
from adrec.models.base import Recommender
from adrec.serving.pipeline import Calibrator, ServingModel
from adrec.simulate.market import Market

__all__ = ["reference_model"]


class _TruthScorer(Recommender):
    """Scores from the market's truth (``oracle``) or from noise (``random``); learns nothing."""

    name = "reference"

    def __init__(self, market: Market, kind: Literal["oracle", "random"], seed: int = 0) -> None:
        self.market = market
        self.kind = kind
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self.n_users_, self.n_items_ = market.n_users, market.n_ads

    def _fit(self, matrix: sp.csr_matrix) -> None:
        """Nothing to learn."""

    def _score_users(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.floating[Any]]:
        items = np.arange(self.n_items_)
        return self._score_pairs(np.repeat(users, self.n_items_), np.tile(items, len(users))).reshape(len(users), -1)

    def _score_pairs(self, users: npt.NDArray[np.int64], items: npt.NDArray[np.int64]) -> npt.NDArray[np.floating[Any]]:
        if self.kind == "oracle":
            return self.market.click_logit(users, items, 1)
        return self.market.config.base_logit + self._rng.normal(size=len(users))


def reference_model(market: Market, kind: Literal["oracle", "random"], seed: int = 0) -> ServingModel:
    """A servable ``oracle`` or ``random`` model of ``market`` (see the module docs)."""
    users = IdMap.from_ids(market.user_ids().tolist())
    items = IdMap.from_ids(market.ad_ids().tolist())
    seen = sp.csr_matrix((market.n_users, market.n_ads), dtype=np.float32)
    artifact = Artifact(_TruthScorer(market, kind, seed), users, items, seen, [], kind)
    # Scores are logits: the identity calibration turns them into the probabilities they are.
    identity = Calibrator(
        a=1.0, b=0.0, mean=0.0, std=1.0, base_rate=float(1 / (1 + np.exp(-market.config.base_logit))), n=1
    )
    # Every ad counts as known (popularity 1): the truth needs no clicks to score an ad, so none is "fresh".
    return ServingModel(artifact, kind, identity, None, np.ones(market.n_ads))
