"""Most-popular baseline: every user gets the items with the most interactions."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from adrec.models.base import IntArray, Recommender, register

__all__ = ["Popularity"]


@register
class Popularity(Recommender):
    """Scores each item by its number of interactions in the training data (the same list for everyone)."""

    name: ClassVar[str] = "popularity"
    _learned: ClassVar[tuple[str, ...]] = ("item_counts_",)

    item_counts_: npt.NDArray[np.float32]

    def __init__(self) -> None:
        pass

    def _fit(self, matrix: sp.csr_matrix) -> None:
        binary = matrix.copy()
        binary.data[:] = 1.0
        self.item_counts_ = np.asarray(binary.sum(axis=0)).ravel().astype(np.float32)

    def _score_users(self, users: IntArray) -> npt.NDArray[np.floating[Any]]:
        return np.broadcast_to(self.item_counts_, (len(users), self.n_items_))

    def _score_pairs(self, users: IntArray, items: IntArray) -> npt.NDArray[np.floating[Any]]:
        return self.item_counts_[items]
