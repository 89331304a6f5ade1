"""Similar-ads search and de-duplication of near-identical creatives, by cosine similarity of content vectors.

Exact (brute-force, blockwise) search: a catalogue of creatives is small next to the user side, and exact
answers keep de-duplication reproducible. Vectors come from any :class:`~adrec.catalog.text.TextEncoder`::

    index = ContentIndex(ad_ids, encoder.encode(texts))
    index.similar("ad-42", k=5)                    # [("ad-17", 0.91), ...]
    kept, groups = deduplicate(ad_ids, vectors, threshold=0.95)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from adrec.catalog.text import FloatArray
from adrec.data.interactions import IdMap
from adrec.data.linalg import normalize_rows, top_k
from adrec.exceptions import ValidationError

__all__ = ["ContentIndex", "SimilarAd", "deduplicate", "near_duplicate_groups"]

_BLOCK = 2048


@dataclass(frozen=True)
class SimilarAd:
    ad_id: str
    similarity: float
    """Cosine similarity to the query, in [-1, 1]."""


def _check_threshold(threshold: float) -> None:
    if not -1.0 <= threshold <= 1.0:
        raise ValidationError("threshold", f"is a cosine similarity, so in [-1, 1] (got {threshold})")


def _as_vectors(vectors: npt.ArrayLike, n: int | None = None) -> FloatArray:
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim != 2:
        raise ValidationError("vectors", f"must be 2-D (items, dim); got shape {v.shape}")
    if n is not None and len(v) != n:
        raise ValidationError("vectors", f"has {len(v)} rows for {n} ids")
    if not np.isfinite(v).all():
        raise ValidationError("vectors", "holds NaN or infinite values")
    return normalize_rows(v)


def near_duplicate_groups(vectors: npt.ArrayLike, threshold: float = 0.95) -> list[npt.NDArray[np.int64]]:
    """Groups of rows linked by cosine similarity ``>= threshold`` (connected components), each sorted, in order
    of their first row; rows without a near-duplicate are left out."""
    _check_threshold(threshold)
    v = _as_vectors(vectors)
    n = len(v)
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    for start in range(0, n, _BLOCK):
        sims = v[start : start + _BLOCK] @ v.T
        rows, cols = np.nonzero(sims >= threshold)
        rows = rows + start
        for a, b in zip(rows[rows < cols].tolist(), cols[rows < cols].tolist(), strict=True):
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([find(i) for i in range(n)], dtype=np.int64)
    groups: dict[int, list[int]] = {}
    for i, r in enumerate(roots.tolist()):
        groups.setdefault(r, []).append(i)
    return [np.array(g, dtype=np.int64) for _, g in sorted(groups.items()) if len(g) > 1]


def deduplicate(
    ids: Sequence[str], vectors: npt.ArrayLike, threshold: float = 0.95
) -> tuple[list[str], list[list[str]]]:
    """Keep the first creative of every near-duplicate group (see :func:`near_duplicate_groups`).

    Returns the kept ids (in input order) and the groups of ids that were merged, the kept one first.
    """
    v = _as_vectors(vectors, len(ids))
    groups = near_duplicate_groups(v, threshold)
    dropped = np.zeros(len(ids), dtype=bool)
    for g in groups:
        dropped[g[1:]] = True
    kept = [i for i, d in zip(ids, dropped.tolist(), strict=True) if not d]
    return kept, [[ids[i] for i in g.tolist()] for g in groups]


class ContentIndex:
    """Exact cosine search over the content vectors of a catalogue.

    Parameters
    ----------
    ids
        External ad ids, one per row of ``vectors`` (no duplicates).
    vectors
        ``(n_ads, dim)`` content vectors (normalised here).
    """

    def __init__(self, ids: Sequence[str], vectors: npt.ArrayLike) -> None:
        self.ids = IdMap.from_ids(list(ids))
        self.vectors = _as_vectors(vectors, len(self.ids))

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"ContentIndex(n={len(self)}, dim={self.vectors.shape[1]})"

    def search(
        self, queries: npt.ArrayLike, k: int = 10, *, min_similarity: float | None = None
    ) -> tuple[npt.NDArray[np.int64], FloatArray]:
        """Top-``k`` rows by cosine for each query vector ``(n, dim)``: indices and similarities ``(n, k')``,
        best first; entries below ``min_similarity`` are ``-1`` / ``-inf``."""
        if k < 1:
            raise ValidationError("k", f"must be >= 1 (got {k})")
        q = _as_vectors(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
        if q.shape[1] != self.vectors.shape[1]:
            raise ValidationError("queries", f"have {q.shape[1]} dimensions, the index {self.vectors.shape[1]}")
        idx, sims = top_k(np.ascontiguousarray(q @ self.vectors.T), k)
        if min_similarity is not None:
            low = sims < min_similarity
            idx[low], sims[low] = -1, -np.inf
        return idx, sims

    def similar(self, ad: str | npt.ArrayLike, k: int = 10, *, min_similarity: float | None = None) -> list[SimilarAd]:
        """The ``k`` ads most similar to an indexed ad id (itself left out) or to one query vector."""
        if isinstance(ad, str):
            row = self.ids.index(ad)
            idx, sims = self.search(self.vectors[row], k + 1, min_similarity=min_similarity)
            pairs = [(i, s) for i, s in zip(idx[0].tolist(), sims[0].tolist(), strict=True) if i != row][:k]
        else:
            idx, sims = self.search(ad, k, min_similarity=min_similarity)
            pairs = list(zip(idx[0].tolist(), sims[0].tolist(), strict=True))
        return [SimilarAd(self.ids.inverse([i])[0], float(s)) for i, s in pairs if i >= 0]

    def near_duplicates(self, threshold: float = 0.95) -> list[list[str]]:
        """Groups of indexed ads whose creatives are near-identical (see :func:`near_duplicate_groups`)."""
        return [self.ids.inverse(g).tolist() for g in near_duplicate_groups(self.vectors, threshold)]
