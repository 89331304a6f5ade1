"""EASE^R: a closed-form linear item-item autoencoder with a zero diagonal."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import torch

from adrec.exceptions import ValidationError
from adrec.models.base import IntArray, check_device, register
from adrec.models.graph_filters import ItemBasedRecommender

__all__ = ["EASE"]


@register
class EASE(ItemBasedRecommender):
    """Embarrassingly shallow autoencoder: item-item weights ``B`` in closed form, scores ``r_u B``.

    Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019.

    ``B`` minimises ``||X - X B||² + λ ||B||²`` subject to ``diag(B) = 0``; the solution is
    ``B = I - P diag(1 / diag(P))`` with ``P = (XᵀX + λ I)⁻¹``, so ``B_ij = -P_ij / P_jj`` off the diagonal.

    The solve is dense: ``O(n_items³)`` time and several ``n_items²`` float32 matrices in memory, so ``fit``
    refuses catalogues larger than ``max_items`` (use ``gfcf`` or ``itemknn`` there).

    Parameters
    ----------
    regularization
        The L2 weight ``λ`` (Steck tunes it on a grid; a few hundred suits most implicit data sets). Default 500.0.
    max_items
        Largest catalogue ``fit`` accepts. Default 20,000 (about 1.6 GB per dense matrix).
    device
        ``"cpu"`` or ``"cuda"``: where the inversion runs. Default ``"cpu"``.
    """

    name: ClassVar[str] = "ease"
    _learned: ClassVar[tuple[str, ...]] = (*ItemBasedRecommender._learned, "weights_")

    weights_: npt.NDArray[np.float32]

    def __init__(self, *, regularization: float = 500.0, max_items: int = 20_000, device: str = "cpu") -> None:
        self.regularization = regularization
        self.max_items = max_items
        self.device = device

    def _fit_items(self, matrix: sp.csr_matrix) -> None:
        n = self.n_items_
        if n > self.max_items:
            gib = n * n * 4 / 2**30
            raise ValidationError(
                "max_items",
                f"EASE solves a dense {n:,} x {n:,} system ({gib:.1f} GiB per matrix, O(n_items³) time), over "
                f"max_items={self.max_items:,}; use 'gfcf' or 'itemknn' for a catalogue this large, or raise "
                "max_items if the memory is there",
            )
        if self.regularization <= 0:
            raise ValidationError("regularization", f"must be > 0; got {self.regularization}")
        check_device(self.device)
        gram = torch.from_numpy((matrix.T @ matrix).toarray()).to(self.device)
        gram.diagonal().add_(self.regularization)
        precision = torch.cholesky_inverse(torch.linalg.cholesky(gram))  # P = (XᵀX + λI)⁻¹
        del gram
        weights = precision.div_(-precision.diagonal().clone()[None, :])  # B_ij = -P_ij / P_jj
        weights.diagonal().zero_()
        self.weights_ = weights.cpu().numpy()

    def _score_users(self, users: IntArray) -> npt.NDArray[np.floating[Any]]:
        return self._score_rows(self._rows(users))

    def _score_rows(self, rows: sp.csr_matrix) -> npt.NDArray[np.floating[Any]]:
        scores: npt.NDArray[np.float32] = rows @ self.weights_
        return scores

    def _score_pairs(self, users: IntArray, items: IntArray) -> npt.NDArray[np.floating[Any]]:
        columns = np.ascontiguousarray(self.weights_[:, items].T)  # (n, n_items): column items[b] of B per row
        return np.asarray(self._rows(users).multiply(columns).sum(axis=1), dtype=np.float32).ravel()
