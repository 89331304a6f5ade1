"""Train/test splits of an interaction matrix. Every split keeps the shape and id maps, and train ∩ test = ∅.

- :func:`random_split`: per user, a random ``test_fraction`` of their interactions goes to test.
- :func:`temporal_split`: per user, the last ``test_fraction`` of their interactions by time goes to test.
- :func:`leave_last_out`: per user, the latest interaction goes to test.

Users with a single interaction keep it in train (nothing can be learned about a user with none).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from adrec.data.interactions import Interactions
from adrec.exceptions import ValidationError

__all__ = ["leave_last_out", "random_split", "temporal_split"]


def _rebuild(data: Interactions, coo: sp.coo_matrix, mask: npt.NDArray[np.bool_]) -> Interactions:
    m = sp.csr_matrix((coo.data[mask], (coo.row[mask], coo.col[mask])), shape=data.matrix.shape)
    return Interactions(m, data.users, data.items)


def _split_by_rank(
    data: Interactions, order_key: npt.NDArray[np.float64], test_fraction: float
) -> tuple[Interactions, Interactions]:
    """Send to test, per user, the entries ranked last by ``order_key`` (a ``ceil``-free, at-least-one rule)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValidationError("test_fraction", f"must be in (0, 1); got {test_fraction}")
    coo = data.matrix.tocoo()
    order = np.lexsort((order_key, coo.row))  # by user, then by key
    row_sorted = coo.row[order]
    counts = np.bincount(row_sorted, minlength=data.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(len(order)) - starts[row_sorted]
    n_test = np.floor(counts * test_fraction + 0.5).astype(np.int64)
    n_test = np.where(counts >= 2, np.clip(n_test, 1, counts - 1), 0)
    is_test_sorted = pos >= (counts - n_test)[row_sorted]
    is_test = np.empty(len(order), dtype=bool)
    is_test[order] = is_test_sorted
    return _rebuild(data, coo, ~is_test), _rebuild(data, coo, is_test)


def random_split(
    data: Interactions, test_fraction: float = 0.2, *, random_state: int | np.random.Generator | None = 0
) -> tuple[Interactions, Interactions]:
    """Per user, a random ``test_fraction`` of their interactions (at least one, at most all but one) to test."""
    rng = np.random.default_rng(random_state)
    return _split_by_rank(data, rng.random(data.nnz), test_fraction)


def temporal_split(
    data: Interactions, timestamps: npt.ArrayLike, test_fraction: float = 0.2
) -> tuple[Interactions, Interactions]:
    """Per user, the latest ``test_fraction`` of their interactions to test.

    ``timestamps`` is a sparse matrix of the shape of ``data`` holding each interaction's time, or an array
    aligned with ``data.matrix``'s stored entries (CSR order).
    """
    ts = _aligned_times(data, timestamps)
    return _split_by_rank(data, ts, test_fraction)


def leave_last_out(data: Interactions, timestamps: npt.ArrayLike) -> tuple[Interactions, Interactions]:
    """Per user with two or more interactions, the latest one to test."""
    ts = _aligned_times(data, timestamps)
    coo = data.matrix.tocoo()
    order = np.lexsort((ts, coo.row))
    row_sorted = coo.row[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = row_sorted[1:] != row_sorted[:-1]
    counts = np.bincount(coo.row, minlength=data.n_users)
    is_test = np.zeros(len(order), dtype=bool)
    is_test[order] = last & (counts[row_sorted] >= 2)
    return _rebuild(data, coo, ~is_test), _rebuild(data, coo, is_test)


def _aligned_times(data: Interactions, timestamps: npt.ArrayLike) -> npt.NDArray[np.float64]:
    if sp.issparse(timestamps):
        t = sp.csr_matrix(timestamps)
        if t.shape != data.matrix.shape:
            raise ValidationError("timestamps", f"shape {t.shape} differs from the data's {data.matrix.shape}")
        t.sort_indices()
        if t.nnz != data.nnz or not (
            np.array_equal(t.indptr, data.matrix.indptr) and np.array_equal(t.indices, data.matrix.indices)
        ):
            raise ValidationError("timestamps", "must have an entry exactly where the data has one")
        # coo of a sorted CSR keeps CSR order
        return np.asarray(t.tocoo().data, dtype=np.float64)
    ts = np.asarray(timestamps, dtype=np.float64)
    if ts.shape != (data.nnz,):
        raise ValidationError("timestamps", f"must have one value per stored interaction ({data.nnz}); got {ts.shape}")
    return ts
