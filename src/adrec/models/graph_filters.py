"""Training-free graph filters over the normalised interaction graph, and the helpers they share.

Shen et al., "How Powerful is Graph Convolution for Recommendation?", CIKM 2021 (GF-CF), showed that a closed-form
filter over the degree-normalised interaction matrix ``R̃ = D_u^{-1/2} R D_i^{-1/2}`` matches trained graph
convolution networks. The filters here (:class:`GFCF`; :class:`~adrec.models.bspm.BSPM` builds on the same state)
learn nothing by gradient descent: ``fit`` normalises ``R`` and takes a truncated SVD of ``R̃``.

The item-item "linear filter" ``P = R̃ᵀR̃`` is dense (Gowalla: 40,981² floats, 6.7 GB) and is never built: a batch
of user rows ``X`` is filtered as ``(X R̃ᵀ) R̃``, two sparse products. Dense work is done item-major (a batch is an
``(n_items, batch)`` array) so that both products read contiguous rows, and in buffers reused across batches.

Item-kNN and EASE are item-item filters too (the GF-CF paper reads them so); they share with GF-CF and BSPM
:class:`ItemBasedRecommender` (a model that scores a user from their training row) and
:func:`~adrec.data.linalg.degree_normalize`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import scipy.linalg as sla
import scipy.sparse as sp
import torch

from adrec.data.linalg import degree_normalize, inverse_power
from adrec.exceptions import ValidationError
from adrec.models.base import IntArray, Recommender, check_device, register

__all__ = ["GFCF", "GraphFilterRecommender", "ItemBasedRecommender", "degree_normalize", "truncated_svd"]


def truncated_svd(
    matrix: sp.spmatrix,
    k: int,
    *,
    n_oversamples: int = 64,
    n_iter: int = 4,
    random_state: int | np.random.Generator | None = 0,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """The ``k`` largest singular values and right singular vectors of a sparse matrix, by randomized SVD.

    Halko, Martinsson & Tropp, "Finding Structure with Randomness", SIAM Review 2011 (Algorithm 4.4, subspace
    iteration). Each power iteration re-orthonormalises with CholeskyQR2 (two Cholesky passes), several times
    faster on few cores than Householder QR. Only sparse × dense products touch ``matrix``.

    Parameters
    ----------
    matrix
        Sparse, shape ``(m, n)``.
    k
        Number of singular triplets; capped at ``min(m, n)``.
    n_oversamples, n_iter
        Extra random directions and power iterations: more of either sharpens the trailing vectors.
    random_state
        Seed of the random start.

    Returns
    -------
    singular_values, vt
        ``(k,)`` in descending order, and ``(k, n)`` with orthonormal rows.
    """
    a = sp.csr_matrix(matrix, dtype=np.float32)
    at = a.T.tocsr()
    k = min(k, *a.shape)
    width = min(k + n_oversamples, *a.shape)
    rng = np.random.default_rng(random_state)
    q = _orthonormalize(a @ rng.standard_normal((a.shape[1], width), dtype=np.float32))
    for _ in range(n_iter):
        q = _orthonormalize(at @ q)
        q = _orthonormalize(a @ q)
    b = np.asarray((at @ q).T, dtype=np.float64)  # (width, n) = qᵀ a
    _, s, vt = sla.svd(b, full_matrices=False)
    return s[:k].astype(np.float32), np.ascontiguousarray(vt[:k], dtype=np.float32)


def _orthonormalize(y: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """An orthonormal basis of the columns of ``y`` (CholeskyQR2; falls back to Householder QR if rank-deficient)."""
    q = np.asarray(y, dtype=np.float64)
    try:
        for _ in range(2):
            chol = sla.cholesky(q.T @ q, lower=True)
            q = sla.solve_triangular(chol, q.T, lower=True).T
    except np.linalg.LinAlgError:
        q = sla.qr(np.asarray(y, dtype=np.float64), mode="economic")[0]
    return np.ascontiguousarray(q, dtype=np.float32)


def _coo_tensor(matrix: sp.csr_matrix, device: torch.device) -> torch.Tensor:
    coo = matrix.tocoo()
    index = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    values = torch.from_numpy(coo.data.astype(np.float32))
    tensor = torch.sparse_coo_tensor(index, values, size=matrix.shape, check_invariants=False)
    return tensor.coalesce().to(device)


class ItemBasedRecommender(Recommender):
    """Base of the models that score a user from their training row ``r`` times an item-item operator.

    ``fit`` keeps the training matrix (as CSR arrays, so that ``save``/``load`` need no pickle) and calls
    :meth:`_fit_items`; :meth:`_rows` gives the training rows of a batch of users.
    """

    _learned: ClassVar[tuple[str, ...]] = ("train_indptr_", "train_indices_", "train_data_")

    train_indptr_: npt.NDArray[np.int64]
    train_indices_: npt.NDArray[np.int32]
    train_data_: npt.NDArray[np.float32]

    def _fit(self, matrix: sp.csr_matrix) -> None:
        matrix = sp.csr_matrix(matrix, dtype=np.float32)
        matrix.sort_indices()
        self.train_indptr_ = matrix.indptr.astype(np.int64)
        self.train_indices_ = matrix.indices.astype(np.int32)
        self.train_data_ = matrix.data.astype(np.float32)
        self._fit_items(self._train())

    @abstractmethod
    def _fit_items(self, matrix: sp.csr_matrix) -> None:
        """Learn the item-item operator from the CSR training matrix ``(n_users_, n_items_)``."""

    def _train(self) -> sp.csr_matrix:
        """The training matrix, rebuilt around the learned arrays (no copy)."""
        return sp.csr_matrix(
            (self.train_data_, self.train_indices_, self.train_indptr_), shape=(self.n_users_, self.n_items_)
        )

    def _rows(self, users: IntArray) -> sp.csr_matrix:
        return self._train()[users]

    def score_rows(self, rows: sp.spmatrix | npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Scores ``(b, n_items)`` of users known only by their interaction rows ``(b, n_items)``: folds in users
        who were not in the training data (or have new events) without refitting."""
        self._check_fitted()
        matrix = sp.csr_matrix(rows, dtype=np.float32)
        if matrix.shape[1] != self.n_items_:
            raise ValidationError("rows", f"must have {self.n_items_} columns (one per item); got {matrix.shape[1]}")
        matrix.sort_indices()
        return np.asarray(self._score_rows(matrix), dtype=np.float32)

    def _score_rows(self, rows: sp.csr_matrix) -> npt.NDArray[np.floating[Any]]:
        """Scores of arbitrary rows; models whose scores are a function of the user's row implement it."""
        raise ValidationError(self.name, "cannot score users outside its training data (no fold-in)")


class GraphFilterRecommender(ItemBasedRecommender):
    """Base of the filters over ``R̃ = D_u^{-1/2} R D_i^{-1/2}``: the SVD, the shared products, the batching.

    Learned state beyond the training rows: the top right singular vectors of ``R̃`` (``factors`` of them, none
    when ``factors == 0``) for the ideal low-pass filter. Subclasses implement :meth:`_filter`, which maps a batch
    of sparse user rows to scores, item-major, with the products below.
    """

    _learned: ClassVar[tuple[str, ...]] = (*ItemBasedRecommender._learned, "vt_")

    vt_: npt.NDArray[np.float32]
    _cache: dict[str, Any]  # scoring state derived from the learned arrays; see _get

    factors: int
    n_iter: int
    batch_size: int
    device: str
    random_state: int | None

    def _check_params(self) -> None:
        """Validate the hyper-parameters (called by ``fit``); subclasses extend it."""
        for name in ("factors", "n_iter"):
            if getattr(self, name) < 0:
                raise ValidationError(name, f"must be >= 0; got {getattr(self, name)}")
        if self.batch_size < 1:
            raise ValidationError("batch_size", f"must be >= 1; got {self.batch_size}")
        check_device(self.device)

    def _fit_items(self, matrix: sp.csr_matrix) -> None:
        self._check_params()
        self._cache = {}
        k = min(self.factors, *matrix.shape)
        if k > 0:
            norm = degree_normalize(matrix)[0]
            _, self.vt_ = truncated_svd(norm, k, n_iter=self.n_iter, random_state=self.random_state)
        else:
            self.vt_ = np.zeros((0, self.n_items_), dtype=np.float32)

    def _set_learned(self, name: str, value: npt.NDArray[Any]) -> None:
        super()._set_learned(name, value)
        self._cache = {}

    def _get(self, key: str) -> Any:
        """Scoring state derived from the learned arrays, built on first use after ``fit`` or ``load``."""
        cache: dict[str, Any] = self.__dict__.setdefault("_cache", {})
        if not cache:
            cache.update(self._build_state())
        return cache[key]

    def _build_state(self) -> dict[str, Any]:
        train = self._train()
        norm, _, item_degrees = degree_normalize(train)
        device = torch.device(self.device)
        # The ideal low-pass filter L = D_i^{-1/2} V Vᵀ D_i^{1/2}, kept as its two thin factors.
        down = inverse_power(item_degrees, 0.5)[:, None]
        up = np.sqrt(item_degrees)[:, None]
        return {
            "train": train,
            "norm": norm,
            "norm_tensor": _coo_tensor(norm, device),
            "norm_t_tensor": _coo_tensor(norm.T.tocsr(), device),
            "low_in": np.ascontiguousarray(self.vt_.T * down, dtype=np.float32),  # (n_items, k): D_i^{-1/2} V
            "low_out": torch.from_numpy(np.ascontiguousarray(self.vt_.T * up, dtype=np.float32)).to(device),
            "device": device,
        }

    # -- the filters, item-major: a batch of b users is an (n_items, b) tensor --------------------------------
    def _linear(self, rows: sp.csr_matrix, ws: _Workspace, out: str) -> torch.Tensor:
        """``(rows P)ᵀ`` for sparse user rows. ``R̃ rowsᵀ`` is sparse (a few percent non-zero), so it is cheap."""
        norm: sp.csr_matrix = self._get("norm")
        projected = norm @ rows.T.tocsc()  # (n_users, b)
        user = _dense_into(projected, ws.users("user"))
        return torch.mm(self._get("norm_t_tensor"), user, out=ws.items(out))

    def _propagate(self, y: torch.Tensor, ws: _Workspace, out: str) -> torch.Tensor:
        """``P y`` for a dense item-major batch ``y`` (``P`` is symmetric: the item-major form of ``yᵀ P``)."""
        user = torch.mm(self._get("norm_tensor"), y, out=ws.users("user"))
        return torch.mm(self._get("norm_t_tensor"), user, out=ws.items(out))

    def _low_pass(self, rows: sp.csr_matrix, ws: _Workspace, out: str) -> torch.Tensor:
        """``(rows L)ᵀ`` with ``L = D_i^{-1/2} V Vᵀ D_i^{1/2}`` the ideal low-pass filter (0 without factors)."""
        low_in: npt.NDArray[np.float32] = self._get("low_in")
        if low_in.shape[1] == 0:
            return ws.items(out).zero_()
        coef = np.ascontiguousarray((rows @ low_in).T)  # (k, b) = Vᵀ D_i^{-1/2} rowsᵀ
        return torch.mm(self._get("low_out"), torch.from_numpy(coef).to(ws.device), out=ws.items(out))

    @abstractmethod
    def _filter(self, rows: sp.csr_matrix, ws: _Workspace) -> torch.Tensor:
        """Scores of a batch of sparse user rows ``(b, n_items)``, item-major ``(n_items, b)``."""

    # -- the Recommender contract -------------------------------------------------------------------------
    def _score_users(self, users: IntArray) -> npt.NDArray[np.floating[Any]]:
        train: sp.csr_matrix = self._get("train")
        return self._score_batches(lambda start, stop: train[users[start:stop]], len(users))

    def _score_rows(self, rows: sp.csr_matrix) -> npt.NDArray[np.floating[Any]]:
        return self._score_batches(lambda start, stop: rows[start:stop], rows.shape[0])

    def _score_batches(self, batch_rows: Callable[[int, int], sp.csr_matrix], n: int) -> npt.NDArray[np.floating[Any]]:
        out = np.empty((n, self.n_items_), dtype=np.float32)
        width = min(self.batch_size, max(n, 1))
        ws = _Workspace(self.n_users_, self.n_items_, width, self._get("device"))
        for start in range(0, n, width):
            batch = batch_rows(start, start + width)
            ws.batch = batch.shape[0]
            out[start : start + batch.shape[0]] = self._filter(batch, ws).T.cpu().numpy()
        return out


class _Workspace:
    """Dense buffers for one scoring call, allocated once and reused by every batch (page faults are costly).

    ``items(name)`` is an ``(n_items, batch)`` tensor and ``users(name)`` an ``(n_users, batch)`` one, both
    contiguous views of storage sized for the widest batch.
    """

    def __init__(self, n_users: int, n_items: int, width: int, device: torch.device) -> None:
        self.n_users, self.n_items, self.width, self.device = n_users, n_items, width, device
        self.batch = width
        self._storage: dict[str, torch.Tensor] = {}

    def _view(self, name: str, rows: int) -> torch.Tensor:
        if name not in self._storage:
            self._storage[name] = torch.empty(rows * self.width, dtype=torch.float32, device=self.device)
        return self._storage[name][: rows * self.batch].view(rows, self.batch)

    def items(self, name: str) -> torch.Tensor:
        return self._view(f"items:{name}", self.n_items)

    def users(self, name: str) -> torch.Tensor:
        return self._view(f"users:{name}", self.n_users)


def _dense_into(matrix: sp.spmatrix, out: torch.Tensor) -> torch.Tensor:
    """Write a sparse matrix into the dense tensor ``out`` of its shape, without a temporary on the CPU."""
    if out.device.type == "cpu":
        matrix.toarray(out=out.numpy())
    else:
        out.copy_(torch.from_numpy(matrix.toarray()))
    return out


@register
class GFCF(GraphFilterRecommender):
    """GF-CF: a linear item-item filter plus an ideal low-pass filter over the normalised interaction graph.

    Shen, Wu, Zhang, Letaief, Ma, Wu, Xu, "How Powerful is Graph Convolution for Recommendation?", CIKM 2021.

    A user's scores are ``s = r R̃ᵀR̃ + alpha · r D_i^{-1/2} V Vᵀ D_i^{1/2}`` with ``r`` the user's training row,
    ``R̃ = D_u^{-1/2} R D_i^{-1/2}`` and ``V`` the top ``factors`` right singular vectors of ``R̃`` (computed by
    :func:`truncated_svd`; the paper used an exact sparse SVD). No training beyond the SVD.

    Parameters
    ----------
    alpha
        Weight of the ideal low-pass term (0.3 in the paper; 0 gives the pure linear filter). Default 0.3.
    factors
        Singular vectors in the ideal low-pass filter (256 in the paper). Default 256.
    n_iter
        Power iterations of the randomized SVD. Default 4.
    batch_size
        Users filtered at once; memory is about ``batch_size * (2 n_items + n_users) * 4`` bytes. Default 1024.
    device
        ``"cpu"`` or ``"cuda"``: where the dense products run. Default ``"cpu"``.
    random_state
        Seed of the randomized SVD. Default 0.
    """

    name: ClassVar[str] = "gfcf"

    def __init__(
        self,
        *,
        alpha: float = 0.3,
        factors: int = 256,
        n_iter: int = 4,
        batch_size: int = 1024,
        device: str = "cpu",
        random_state: int | None = 0,
    ) -> None:
        self.alpha = alpha
        self.factors = factors
        self.n_iter = n_iter
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state

    def _filter(self, rows: sp.csr_matrix, ws: _Workspace) -> torch.Tensor:
        scores = self._linear(rows, ws, "scores")
        if self.alpha != 0:
            scores.add_(self._low_pass(rows, ws, "low"), alpha=self.alpha)
        return scores
