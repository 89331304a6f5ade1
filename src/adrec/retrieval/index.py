"""Vector indexes for candidate retrieval: maximum inner product search over ad embeddings.

:class:`ExactIndex` scores every vector (the reference, and the fallback). :class:`FaissIndex` is approximate
(FAISS inverted lists, or HNSW), for catalogues where the exact scan is too slow. Both answer the same call,
``search(queries, k) -> (ids, scores)``, with ids ``-1`` and scores ``-inf`` where fewer than ``k`` exist.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import math
import os
from pathlib import Path
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
    hnsw_m, ef_construction
        HNSW links per node and build-time beam width. A wider build beam makes a better graph: on MF-BPR
        embeddings of 100k ads (float32 storage, measured once by hand), ``ef_construction`` 160 gave recall@100
        0.963 at ``ef_search`` 256, where FAISS's default of 40 needed 384 for 0.968; the build takes about 3x
        longer (about 30 s here, once per model: see ``cache_dir`` of :func:`build_index`).
    storage
        How HNSW keeps the vectors it walks: ``"sq8"`` (default: 8-bit scalar quantisation, a quarter of the
        memory) or ``"flat"`` (float32). On MF-BPR embeddings of 100k ads, with both read alternately six times:
        0.74 vs 0.83 ms per query (200 results, ``ef_search`` 256), recall@100 0.961 vs 0.963. Either way the
        returned scores are exact inner products: the candidates are re-scored with the float vectors and re-sorted.
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
        ef_construction: int = 160,
        storage: Literal["sq8", "flat"] = "sq8",
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
            if storage == "sq8":
                index = faiss.IndexHNSWSQ(self.dim, faiss.ScalarQuantizer.QT_8bit, hnsw_m, faiss.METRIC_INNER_PRODUCT)  # type: ignore[arg-type]
                index.train(x)
            elif storage == "flat":
                index = faiss.IndexHNSWFlat(self.dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            else:
                raise ConfigError(f"unknown HNSW storage {storage!r}; use 'sq8' or 'flat'")
            index.hnsw.efConstruction = ef_construction
            index.hnsw.efSearch = ef_search
        else:
            raise ConfigError(f"unknown FAISS index kind {kind!r}; use 'ivf' or 'hnsw'")
        index.add(x)
        self.index = index
        self._vectors = x if isinstance(index, faiss.IndexHNSWSQ) else None

    def save(self, path: str | Path) -> None:
        """Write the index (vectors and graph or lists) to ``path``, atomically."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self._faiss.write_index(self.index, str(tmp))
        os.replace(tmp, path)

    @classmethod
    def load(
        cls, path: str | Path, vectors: npt.ArrayLike, *, nprobe: int = 16, ef_search: int = 256, threads: int = 1
    ) -> FaissIndex:
        """Read an index written by :meth:`save` over ``vectors`` (kept to re-score quantised search), with these
        search settings."""
        import faiss

        faiss.omp_set_num_threads(threads)
        index = faiss.read_index(str(path))
        x = _as_matrix(vectors, "vectors")
        if x.shape != (index.ntotal, index.d):
            raise ConfigError(f"{path} indexes {index.ntotal} x {index.d} vectors, not {x.shape[0]} x {x.shape[1]}")
        self = cls.__new__(cls)
        self._faiss, self.index = faiss, index
        self.n, self.dim = int(index.ntotal), int(index.d)
        self._vectors = x if isinstance(index, faiss.IndexHNSWSQ) else None
        if isinstance(index, faiss.IndexHNSW):
            self.kind = "hnsw"
            index.hnsw.efSearch = ef_search
        elif isinstance(index, faiss.IndexIVF):
            self.kind, self.nlist = "ivf", int(index.nlist)
            index.nprobe = min(nprobe, self.nlist)
        else:
            self.kind = "flat"
        return self

    def search(self, queries: npt.ArrayLike, k: int) -> tuple[IntArray, FloatArray]:
        q = _as_matrix(queries, "queries")
        if q.shape[1] != self.dim:
            raise ValueError(f"queries have dimension {q.shape[1]}, the index {self.dim}")
        scores, ids = self.index.search(q, k)
        ids = ids.astype(np.int64)
        if self._vectors is not None:  # quantised walk: exact scores for the candidates found, best first
            scores = np.einsum("qkd,qd->qk", self._vectors[np.maximum(ids, 0)], q)
            scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
            order = np.argsort(-scores, axis=1, kind="stable")
            return np.take_along_axis(ids, order, axis=1), np.take_along_axis(scores, order, axis=1)
        scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
        return ids, scores


_SEARCH_PARAMS = ("nprobe", "ef_search", "threads")


def build_index(
    vectors: npt.ArrayLike, kind: str = "auto", *, cache_dir: str | Path | None = None, **params: Any
) -> VectorIndex:
    """``"exact"``, ``"ivf"``, ``"hnsw"``, or ``"auto"`` (exact below 20,000 vectors, HNSW above).

    HNSW is the default approximate index: on MF-BPR embeddings of 100k ads (benchmarks/results/serving.md) it
    reaches recall@100 0.953 at ``ef_search`` 224 (0.961 at 256), where IVF stays under 0.7 even scanning a fifth
    of its cells.

    With ``cache_dir``, a built FAISS index is written there under a name derived from the vectors and the build
    parameters, and read back instead of rebuilt the next time (an HNSW build of 100k vectors takes tens of
    seconds; reading it, well under one). A cache that cannot be written is skipped.
    """
    x = np.asarray(vectors)
    if kind == "auto":
        kind = "exact" if x.shape[0] < 20_000 else "hnsw"
    if kind == "exact":
        return ExactIndex(x)
    if kind not in ("ivf", "hnsw"):
        raise ConfigError(f"unknown index kind {kind!r}; use auto, exact, ivf or hnsw")
    if cache_dir is None:
        return FaissIndex(x, kind=kind, **params)  # type: ignore[arg-type]
    # Every build parameter, defaults included: a changed default must not read back an index built the old way.
    defaults = {
        name: p.default
        for name, p in inspect.signature(FaissIndex.__init__).parameters.items()
        if p.kind is p.KEYWORD_ONLY and name not in _SEARCH_PARAMS
    }
    build = {k: params.get(k, v) for k, v in sorted(defaults.items())}
    digest = hashlib.sha256(json.dumps([kind, build, x.shape, str(x.dtype)]).encode())
    digest.update(np.ascontiguousarray(x).tobytes())
    path = Path(cache_dir) / f"index-{kind}-{digest.hexdigest()[:16]}.faiss"
    search = {k: v for k, v in params.items() if k in _SEARCH_PARAMS}
    if path.is_file():
        try:
            return FaissIndex.load(path, x, **search)
        except (RuntimeError, ConfigError):  # unreadable (e.g. truncated by a full disk): rebuild below
            pass
    index = FaissIndex(x, kind=kind, **params)  # type: ignore[arg-type]
    with contextlib.suppress(OSError):
        index.save(path)
    return index


def recall_at_k(approx: VectorIndex, exact: ExactIndex, queries: npt.ArrayLike, k: int) -> float:
    """Mean share of the exact top ``k`` that the approximate index also returns in its top ``k``."""
    a, _ = approx.search(queries, k)
    e, _ = exact.search(queries, k)
    hits = sum(len(set(ai[ai >= 0].tolist()) & set(ei[ei >= 0].tolist())) for ai, ei in zip(a, e, strict=True))
    total = int((e >= 0).sum())
    return hits / total if total else 1.0
