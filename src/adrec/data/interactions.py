"""Id maps and the user × item interaction matrix every recommender trains on.

External ids (``*_id``, strings) are mapped to contiguous internal indices (``*_idx``, ints) by :class:`IdMap`.
:class:`Interactions` is a CSR matrix of shape ``(n_users, n_items)`` with the two id maps beside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from adrec.exceptions import ImportFormatError, NotFoundError, ValidationError

__all__ = ["IdMap", "Interactions", "load_lightgcn"]


class IdMap:
    """A two-way map between external string ids and contiguous indices ``0..n-1`` in first-seen order.

    Examples
    --------
    >>> m = IdMap().fit(["u7", "u3"])
    >>> m.transform(["u3"]).tolist()
    [1]
    >>> m.fit_partial(["u9"]).inverse([2]).tolist()
    ['u9']
    """

    def __init__(self) -> None:
        self._index: dict[str, int] = {}
        self._ids: list[str] = []

    def fit(self, ids: Iterable[str]) -> IdMap:
        """Forget everything and map ``ids``."""
        self._index, self._ids = {}, []
        return self.fit_partial(ids)

    def fit_partial(self, ids: Iterable[str]) -> IdMap:
        """Add ids not seen yet, after the existing ones (indices already given never change)."""
        for x in ids:
            if x not in self._index:
                self._index[x] = len(self._ids)
                self._ids.append(x)
        return self

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, x: object) -> bool:
        return x in self._index

    def index(self, x: str) -> int:
        try:
            return self._index[x]
        except KeyError:
            raise NotFoundError(
                f"unknown id {x!r} (the map holds {len(self)} ids; call fit_partial to add it)"
            ) from None

    def transform(self, ids: Iterable[str], *, missing: int | None = None) -> npt.NDArray[np.int64]:
        """Indices of ``ids``; unknown ids raise :class:`NotFoundError` unless ``missing`` gives their value."""
        if missing is None:
            return np.array([self.index(x) for x in ids], dtype=np.int64)
        return np.array([self._index.get(x, missing) for x in ids], dtype=np.int64)

    def inverse(self, idx: npt.ArrayLike) -> npt.NDArray[np.object_]:
        """External ids of indices ``idx`` (any shape)."""
        arr = np.asarray(idx, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= len(self)):
            raise ValidationError("idx", f"indices must be in [0, {len(self)}); got {arr.min()}..{arr.max()}")
        return np.asarray(self._ids, dtype=object)[arr] if len(self) else np.empty(arr.shape, dtype=object)

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    @classmethod
    def from_ids(cls, ids: Sequence[str]) -> IdMap:
        out = cls().fit(ids)
        if len(out) != len(ids):
            raise ValidationError("ids", "contains duplicates")
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and self._ids == other._ids

    def __repr__(self) -> str:
        return f"IdMap(n={len(self)})"


@dataclass
class Interactions:
    """Implicit feedback as a binary CSR matrix ``(n_users, n_items)``, with id maps.

    ``matrix[u, i]`` is the weight of user ``u``'s interactions with item ``i`` (1 for implicit feedback).
    """

    matrix: sp.csr_matrix
    users: IdMap = field(default_factory=IdMap)
    items: IdMap = field(default_factory=IdMap)

    def __post_init__(self) -> None:
        self.matrix = sp.csr_matrix(self.matrix, dtype=np.float32)
        self.matrix.sum_duplicates()
        self.matrix.sort_indices()
        n_users, n_items = self.matrix.shape
        if len(self.users) == 0:
            self.users = IdMap().fit(str(i) for i in range(n_users))
        if len(self.items) == 0:
            self.items = IdMap().fit(str(i) for i in range(n_items))
        if (len(self.users), len(self.items)) != (n_users, n_items):
            raise ValidationError(
                "interactions",
                f"matrix is {n_users} x {n_items} but the id maps hold "
                f"{len(self.users)} users, {len(self.items)} items",
            )

    @property
    def n_users(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def nnz(self) -> int:
        return int(self.matrix.nnz)

    @classmethod
    def from_pairs(
        cls,
        user_idx: npt.ArrayLike,
        item_idx: npt.ArrayLike,
        shape: tuple[int, int] | None = None,
        weights: npt.ArrayLike | None = None,
        *,
        users: IdMap | None = None,
        items: IdMap | None = None,
    ) -> Interactions:
        """Build from index pairs; duplicate pairs are merged (binarised unless ``weights`` is given)."""
        u = np.asarray(user_idx, dtype=np.int64)
        i = np.asarray(item_idx, dtype=np.int64)
        if shape is None:
            shape = (int(u.max()) + 1 if u.size else 0, int(i.max()) + 1 if i.size else 0)
        w = np.ones(len(u), dtype=np.float32) if weights is None else np.asarray(weights, dtype=np.float32)
        m = sp.csr_matrix((w, (u, i)), shape=shape, dtype=np.float32)
        m.sum_duplicates()
        if weights is None:
            m.data[:] = 1.0
        return cls(m, users or IdMap(), items or IdMap())

    def pairs(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """``(user_idx, item_idx)`` of every stored interaction, user-major."""
        coo = self.matrix.tocoo()
        return coo.row.astype(np.int64), coo.col.astype(np.int64)

    def __repr__(self) -> str:
        return f"Interactions(users={self.n_users}, items={self.n_items}, nnz={self.nnz})"


def _read_lightgcn_lines(path: Path) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    users: list[npt.NDArray[np.int64]] = []
    items: list[npt.NDArray[np.int64]] = []
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            try:
                ids = np.array([int(x) for x in parts], dtype=np.int64)
            except ValueError:
                raise ImportFormatError(f"{path}:{line_no}: expected integers 'user item item ...'") from None
            if (ids < 0).any():
                raise ImportFormatError(f"{path}:{line_no}: negative id")
            users.append(np.full(len(ids) - 1, ids[0], dtype=np.int64))
            items.append(ids[1:])
    if not users:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(users), np.concatenate(items)


def load_lightgcn(path: str | Path) -> tuple[Interactions, Interactions]:
    """The LightGCN split (``train.txt``, ``test.txt``: ``user item item ...`` per line) as two matrices.

    Both share one shape: users and items are the 0-based ids of the files, counted over both files.
    """
    root = Path(path)
    files = [root / "train.txt", root / "test.txt"]
    for f in files:
        if not f.is_file():
            raise ImportFormatError(f"{f} does not exist; a LightGCN dataset folder holds train.txt and test.txt")
    (tu, ti), (vu, vi) = (_read_lightgcn_lines(f) for f in files)
    shape = (int(max(tu.max(initial=-1), vu.max(initial=-1))) + 1, int(max(ti.max(initial=-1), vi.max(initial=-1))) + 1)
    users = IdMap().fit(str(i) for i in range(shape[0]))
    items = IdMap().fit(str(i) for i in range(shape[1]))
    return (
        Interactions.from_pairs(tu, ti, shape, users=users, items=items),
        Interactions.from_pairs(vu, vi, shape, users=users, items=items),
    )


def as_matrix(data: Interactions | sp.spmatrix | Any) -> sp.csr_matrix:
    """The CSR matrix of ``data`` (an :class:`Interactions` or anything SciPy can make a CSR matrix from)."""
    if isinstance(data, Interactions):
        return data.matrix
    return sp.csr_matrix(data, dtype=np.float32)
