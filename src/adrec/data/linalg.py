"""Linear algebra that models, the catalogue, profiles and evaluation share: top-``k`` rows, unit rows, and the
degree normalisation of an interaction matrix.

One definition each, below every package that uses them, so that a tie rule or an ``EXCLUDED`` convention
cannot drift between copies.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

__all__ = ["EXCLUDED", "degree_normalize", "inverse_power", "normalize_rows", "top_k"]

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

EXCLUDED = float(np.finfo(np.float32).min)
"""Score that marks an item as not recommendable. Finite on purpose: ``torch.topk`` is several times slower on
rows holding ``-inf``. :func:`top_k` reports such entries (and ``-inf`` ones) with score ``-inf``."""


def top_k(scores: npt.NDArray[np.floating[Any]], k: int) -> tuple[IntArray, FloatArray]:
    """Indices and values of the ``k`` largest entries of each row, best first (ties: lower index first).

    ``scores`` has shape ``(n, m)``; the result has shape ``(n, min(k, m))``. Entries at or below
    :data:`EXCLUDED` come last, with value ``-inf``. Uses :func:`torch.topk` (no copy of a float32 C-contiguous
    input), which is many times faster than ``numpy.argpartition`` on wide rows.
    """
    import torch  # here, not at module level: importing the data layer should not import torch

    n, m = scores.shape
    k = min(k, m)
    if k <= 0 or n == 0:
        return np.empty((n, max(k, 0)), dtype=np.int64), np.empty((n, max(k, 0)), dtype=np.float32)
    if not scores.flags.writeable:  # torch refuses read-only buffers (e.g. broadcast views)
        scores = np.array(scores, dtype=np.float32)
    values, index = torch.topk(torch.as_tensor(scores, dtype=torch.float32), k, dim=1)
    part, vals = index.numpy().astype(np.int64), values.numpy().copy()
    vals[vals <= EXCLUDED] = -np.inf
    # Deterministic order among equal scores: value descending, then index ascending.
    order = np.lexsort((part, -vals), axis=1)
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1).astype(np.float32)


def normalize_rows(x: npt.ArrayLike) -> FloatArray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero), as float32."""
    a = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(a, axis=-1, keepdims=True)
    out: FloatArray = np.divide(a, norms, out=np.zeros_like(a), where=norms > 0)
    return out


def degree_normalize(
    matrix: sp.spmatrix,
    *,
    user_power: float = 0.5,
    item_power: float = 0.5,
    dtype: npt.DTypeLike = np.float32,
) -> tuple[sp.csr_matrix, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``D_u^{-user_power} R D_i^{-item_power}`` with ``D`` the weighted degrees (row and column sums of ``R``).

    Rows and columns of degree 0 stay 0. With powers ``(0.5, 0.5)`` this is the symmetric normalisation
    ``D^-1/2 A D^-1/2`` of GF-CF, LightGCN and BSPM; with ``(0, 0.5)`` on a 0/1 matrix, ``R̃ᵀR̃`` is the item-item
    cosine similarity.

    Returns
    -------
    normalized, user_degrees, item_degrees
        A CSR matrix of the shape of ``matrix`` in ``dtype`` (default float32; the scaling itself is computed in
        float64), and the float64 degree vectors ``(n_users,)``, ``(n_items,)``.
    """
    csr = sp.csr_matrix(matrix, dtype=dtype)
    user_degrees = np.asarray(csr.sum(axis=1), dtype=np.float64).ravel()
    item_degrees = np.asarray(csr.sum(axis=0), dtype=np.float64).ravel()
    user_scale = inverse_power(user_degrees, user_power)
    item_scale = inverse_power(item_degrees, item_power)
    out = csr.copy()
    rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
    out.data = (csr.data * user_scale[rows] * item_scale[csr.indices]).astype(dtype)
    return out, user_degrees, item_degrees


def inverse_power(degrees: npt.NDArray[np.float64], power: float) -> npt.NDArray[np.float64]:
    """``degrees ** -power`` where the degree is positive, 0 elsewhere."""
    out = np.zeros_like(degrees)
    positive = degrees > 0
    out[positive] = degrees[positive] ** -power
    return out
