"""Vector indexes: the exact index on known answers, FAISS against it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from adrec.retrieval import ExactIndex, FaissIndex, build_index, recall_at_k


def test_exact_index_known_answer() -> None:
    vectors = np.eye(4, dtype=np.float32) * np.array([[1.0], [2.0], [3.0], [4.0]], dtype=np.float32)
    ids, scores = ExactIndex(vectors).search(np.ones((1, 4)), 3)
    assert ids.tolist() == [[3, 2, 1]]
    np.testing.assert_allclose(scores, [[4.0, 3.0, 2.0]])
    ids, _ = ExactIndex(vectors).search(np.ones((1, 4)), 6)  # more than there are: padded with -1
    assert ids.tolist() == [[3, 2, 1, 0, -1, -1]]


def test_exact_subset_search_returns_only_the_subset() -> None:
    vectors = np.arange(10, dtype=np.float32)[:, None]
    ids, _ = ExactIndex(vectors).search_subset(np.ones(1), [1, 4, 7], 2)
    assert ids.tolist() == [[7, 4]]


def _clustered(n: int, dim: int, clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim)).astype(np.float32)
    x = centers[rng.integers(0, clusters, n)] + 0.3 * rng.normal(size=(n, dim)).astype(np.float32)
    q = centers[rng.integers(0, clusters, 50)] + 0.3 * rng.normal(size=(50, dim)).astype(np.float32)
    return x, q


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_faiss_recall_against_exact(kind: str) -> None:
    x, q = _clustered(5_000, 32, 50, seed=0)
    approx = FaissIndex(x, kind=kind, nprobe=8, ef_search=128)  # type: ignore[arg-type]
    assert approx.kind == kind
    assert recall_at_k(approx, ExactIndex(x), q, 100) >= 0.95


def test_small_catalogues_use_a_flat_index_and_auto_picks_exact() -> None:
    x, q = _clustered(500, 16, 5, seed=1)
    flat = FaissIndex(x)
    assert flat.kind == "flat"
    assert recall_at_k(flat, ExactIndex(x), q, 20) == pytest.approx(1.0)
    assert isinstance(build_index(x), ExactIndex)


def test_bad_vectors_are_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        ExactIndex(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="dimension"):
        ExactIndex(np.ones((3, 4))).search(np.ones((1, 5)), 1)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_index_cache_is_read_back_and_keyed_by_vectors_and_build_parameters(kind: str, tmp_path: Path) -> None:
    x, q = _clustered(3_000, 16, 20, seed=1)
    first = build_index(x, kind, cache_dir=tmp_path, nprobe=4, ef_search=64)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1 and files[0].startswith(f"index-{kind}-")
    # Read back (not rebuilt): same answers, and the search settings of this call apply.
    again = build_index(x, kind, cache_dir=tmp_path, nprobe=16, ef_search=128)
    assert sorted(p.name for p in tmp_path.iterdir()) == files
    assert isinstance(again, FaissIndex) and again.kind == kind
    if kind == "ivf":
        assert again.index.nprobe == 16
    else:
        assert again.index.hnsw.efSearch == 128
    wide = build_index(x, kind, nprobe=16, ef_search=128)
    np.testing.assert_array_equal(again.search(q, 10)[0], wide.search(q, 10)[0])
    assert not np.array_equal(first.search(q, 50)[0], again.search(q, 50)[0])  # narrower search differs
    # Other vectors or other build parameters: another file.
    build_index(x * 2, kind, cache_dir=tmp_path, nprobe=4)
    build_index(x, kind, cache_dir=tmp_path, nprobe=4, **({"nlist": 40} if kind == "ivf" else {"hnsw_m": 8}))
    assert len(list(tmp_path.iterdir())) == 3
    # A damaged file is rebuilt, not an error.
    (tmp_path / files[0]).write_bytes(b"not an index")
    rebuilt = build_index(x, kind, cache_dir=tmp_path, nprobe=16, ef_search=128)
    np.testing.assert_array_equal(rebuilt.search(q, 10)[0], wide.search(q, 10)[0])


@pytest.mark.parametrize("storage", ["sq8", "flat"])
def test_hnsw_scores_are_exact_inner_products_best_first(storage: str) -> None:
    x, q = _clustered(3_000, 16, 20, seed=2)
    index = FaissIndex(x, kind="hnsw", storage=storage, ef_search=128)  # type: ignore[arg-type]
    ids, scores = index.search(q, 20)
    exact = np.einsum("qkd,qd->qk", x[ids], q)
    np.testing.assert_allclose(scores, exact, rtol=1e-5, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    assert recall_at_k(index, ExactIndex(x), q, 20) >= 0.95
