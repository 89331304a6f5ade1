"""A checkerboard ad market for serving tests: 4 groups (advertiser, campaign, category), 5 ads and 5 users each.

User ``u-g-j`` has interacted with the ads of group ``g``; the :class:`Blocks` model gives it the highest score on
ad ``ad-g-j`` (its own), then the other ads of its group, then everything else. With equal bids the pipeline must
therefore serve ``ad-g-j`` first to ``u-g-j``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from adrec.data.interactions import IdMap, Interactions
from adrec.data.schema import Ad, Advertiser, Campaign, Gender, PricingModel, User
from adrec.models.artifact import Artifact
from adrec.models.base import Recommender
from adrec.serving.pipeline import Calibrator, ServingModel
from adrec.store import Store

GROUPS = ("shoes", "travel", "games", "food")
PER = 5
SECRET = "test-secret-0123456789abcdef"


def user_id(g: int, j: int) -> str:
    return f"u-{g}-{j}"


def ad_id(g: int, j: int) -> str:
    return f"ad-{g}-{j}"


def fill(store: Store, *, bid: float = 1.0, **campaign: Any) -> None:
    store.upsert_advertisers([Advertiser(advertiser_id=f"adv-{g}", name=name) for g, name in enumerate(GROUPS)])
    store.upsert_campaigns(
        [
            Campaign(
                campaign_id=f"cmp-{g}",
                advertiser_id=f"adv-{g}",
                name=f"{name} campaign",
                pricing_model=PricingModel.CPC,
                bid=bid,
                **campaign,
            )
            for g, name in enumerate(GROUPS)
        ]
    )
    store.upsert_ads(
        [
            Ad(ad_id=ad_id(g, j), campaign_id=f"cmp-{g}", title=f"{name} {j}", category=name, brand=f"brand-{g}")
            for g, name in enumerate(GROUPS)
            for j in range(PER)
        ]
    )
    store.upsert_users(
        [
            User(user_id=user_id(g, j), age=20 + 10 * j, gender=Gender.FEMALE if j % 2 else Gender.MALE)
            for g in range(len(GROUPS))
            for j in range(PER)
        ]
    )


class Blocks(Recommender):
    """Fixed embeddings: group indicator plus a smaller own-index indicator (not registered: tests only)."""

    name = "blocks-test"
    _learned = ("user_factors_", "item_factors_")

    def _fit(self, matrix: sp.csr_matrix) -> None:
        n_groups = len(GROUPS)
        eye = np.eye(n_groups + PER, dtype=np.float32)
        group = np.repeat(np.arange(n_groups), PER)
        own = np.tile(np.arange(PER), n_groups)
        self.user_factors_ = eye[group] + 0.5 * eye[n_groups + own]
        self.item_factors_ = eye[group] + 0.1 * eye[n_groups + own]

    @property
    def user_embeddings(self) -> npt.NDArray[np.float32]:
        return self.user_factors_

    @property
    def item_embeddings(self) -> npt.NDArray[np.float32]:
        return self.item_factors_

    def _score_users(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return self.user_factors_[users] @ self.item_factors_.T


def blocks_interactions() -> Interactions:
    users = IdMap.from_ids([user_id(g, j) for g in range(len(GROUPS)) for j in range(PER)])
    items = IdMap.from_ids([ad_id(g, j) for g in range(len(GROUPS)) for j in range(PER)])
    u, i = [], []
    for g in range(len(GROUPS)):
        for j in range(PER):
            for jj in range(PER):
                u.append(g * PER + j)
                i.append(g * PER + jj)
    return Interactions.from_pairs(u, i, (len(users), len(items)), users=users, items=items)


def blocks_model(version: str = "blocks-v1") -> ServingModel:
    data = blocks_interactions()
    model = ServingModel.from_artifact(Artifact.create(Blocks().fit(data), data), version=version)
    model.calibrator = Calibrator(a=1.0, b=-3.0, mean=0.0, std=0.1, base_rate=0.02, n=1000)
    return model
