"""Vector indexes for candidate retrieval: maximum inner product search over ad embeddings.

:class:`ExactIndex` scores every vector (the reference, and the fallback). :class:`FaissIndex` is approximate
(FAISS inverted lists, or HNSW), for catalogues where the exact scan is too slow. Both answer the same call,
``search(queries, k) -> (ids, scores)``, with ids ``-1`` and scores ``-inf`` where fewer than ``k`` exist.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from adrec.exceptions import ConfigError

__all__ = ["ExactIndex", "FaissIndex", "VectorIndex", "build_index", "recall_at_k"]

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@runtime_checkable
class VectorIndex(Protocol):
    """Top-k inner-product search over a fixed set of vectors (row ``i`` has id ``i``)."""

    n: int
    dim: int

    def search(self, queries: npt.ArrayLike, k: int) -> tuple[IntArray, FloatArray]: ...


def _as_matrix(x: npt.ArrayLike, what: str) -> FloatArray:
    m = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if m.ndim == 1:
        m = m[None, :]
    if m.ndim != 2:
        raise ValueError(f"{what} must be a 2-d array, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    return m


class ExactIndex:
    """Brute-force inner product over all vectors (one matrix product per batch of queries)."""

    def __init__(self, vectors: npt.ArrayLike) -> None:
        self.vectors = _as_matrix(vectors, "vectors")
        self.n, self.dim = self.vectors.shape

    def search(self, queries: npt.ArrayLike, k: int) -> tuple[IntArray, FloatArray]:
        q = _as_matrix(queries, "queries")
        if q.shape[1] != self.dim:
            raise ValueError(f"queries have dimension {q.shape[1]}, the index {self.dim}")
        scores = q @ self.vectors.T
        return _top_k(scores, k)

    def search_subset(self, query: npt.ArrayLike, subset: npt.ArrayLike, k: int) -> tuple[IntArray, FloatArray]:
        """Top ``k`` among the rows ``subset`` only (e.g. the eligible ads), for one query."""
        rows = np.asarray(subset, dtype=np.int64)
        q = _as_matrix(query, "query")[0]
        scores = self.vectors[rows] @ q
        ids, top = _top_k(scores[None, :], k)
        valid = ids[0] >= 0
        out = np.full(ids.shape[1], -1, dtype=np.int64)
        out[valid] = rows[ids[0][valid]]
        return out[None, :], top


def _top_k(scores: npt.NDArray[np.float32], k: int) -> tuple[IntArray, FloatArray]:
    n_q, n = scores.shape
    kk = min(k, n)
    ids = np.full((n_q, k), -1, dtype=np.int64)
    out = np.full((n_q, k), -np.inf, dtype=np.float32)
    if kk == 0:
        return ids, out
    part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk] if kk < n else np.tile(np.arange(n), (n_q, 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    ids[:, :kk] = np.take_along_axis(part, order, axis=1)
    out[:, :kk] = np.take_along_axis(part_scores, order, axis=1)
    return ids, out


class FaissIndex:
    """Approximate inner-product search with FAISS.

    Parameters
    ----------
    vectors
        One row per item.
    kind
        ``"hnsw"`` (graph search; ``ef_search`` is the beam width) or ``"ivf"`` (inverted lists over k-means
        cells; ``nprobe`` cells are scanned per query). Below ``min_train`` vectors an exact flat index is used:
        approximate search buys nothing there.
    nlist
        Number of IVF cells (default ``4 * sqrt(n)``).
    nprobe, ef_search
        Search breadth: higher is more accurate and slower. Choose with :func:`recall_at_k` against
        :class:`ExactIndex` (``benchmarks/bench_serving.py`` reports the trade-off).
    threads
        FAISS OpenMP threads (default 1: serving answers many small queries concurrently).
    """

    def __init__(
        self,
        vectors: npt.ArrayLike,
        *,
        kind: Literal["ivf", "hnsw"] = "hnsw",
        nlist: int | None = None,
        nprobe: int = 16,
        ef_search: int = 256,
        hnsw_m: int = 32,
        min_train: int = 2_000,
        threads: int = 1,
        seed: int = 0,
    ) -> None:
        try:
            import faiss
        except ModuleNotFoundError:  # pragma: no cover - faiss-cpu is a dependency
            raise ConfigError("FAISS is not installed: pip install faiss-cpu") from None
        self._faiss: Any = faiss
        faiss.omp_set_num_threads(threads)
        x = _as_matrix(vectors, "vectors")
        self.n, self.dim = x.shape
        self.kind = kind if self.n >= min_train else "flat"
        index: Any
        if self.kind == "flat":
            index = faiss.IndexFlatIP(self.dim)
        elif self.kind == "ivf":
            self.nlist = nlist or max(1, int(4 * math.sqrt(self.n)))
            quantizer = faiss.IndexFlatIP(self.dim)
            index = faiss.IndexIVFFlat(quantizer, self.dim, self.nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = seed
            index.train(x)
            index.nprobe = min(nprobe, self.nlist)
            self._quantizer = quantizer  # keep it alive: the IVF index does not own it
        elif self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = ef_search
        else:
            raise ConfigError(f"unknown FAISS index kind {kind!r}; use 'ivf' or 'hnsw'")
        index.add(x)
        self.index = index

    def search(self, queries: npt.ArrayLike, k: int) -> tuple[IntArray, FloatArray]:
        q = _as_matrix(queries, "queries")
        if q.shape[1] != self.dim:
            raise ValueError(f"queries have dimension {q.shape[1]}, the index {self.dim}")
        scores, ids = self.index.search(q, k)
        ids = ids.astype(np.int64)
        scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
        return ids, scores


def build_index(vectors: npt.ArrayLike, kind: str = "auto", **params: Any) -> VectorIndex:
    """``"exact"``, ``"ivf"``, ``"hnsw"``, or ``"auto"`` (exact below 20,000 vectors, HNSW above).

    HNSW is the default approximate index: on MF-BPR embeddings of 100k ads (benchmarks/results/serving.md) it
    reaches recall@100 0.95 at ``ef_search`` 256, where IVF needs to scan most cells for the same recall.
    """
    n = np.asarray(vectors).shape[0]
    if kind == "auto":
        kind = "exact" if n < 20_000 else "hnsw"
    if kind == "exact":
        return ExactIndex(vectors)
    if kind in ("ivf", "hnsw"):
        return FaissIndex(vectors, kind=kind, **params)  # type: ignore[arg-type]
    raise ConfigError(f"unknown index kind {kind!r}; use auto, exact, ivf or hnsw")


def recall_at_k(approx: VectorIndex, exact: ExactIndex, queries: npt.ArrayLike, k: int) -> float:
    """Mean share of the exact top ``k`` that the approximate index also returns in its top ``k``."""
    a, _ = approx.search(queries, k)
    e, _ = exact.search(queries, k)
    hits = sum(len(set(ai[ai >= 0].tolist()) & set(ei[ei >= 0].tolist())) for ai, ei in zip(a, e, strict=True))
    total = int((e >= 0).sum())
    return hits / total if total else 1.0
