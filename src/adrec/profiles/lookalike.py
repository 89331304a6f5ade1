"""Lookalike audiences: expand a seed list of users to the ``size`` users most like them.

Users are compared by vectors learned from behaviour (:class:`UserVectors`): a fitted model's user embeddings,
the embeddings stored in profiles, or, for models without embeddings, the users' interaction rows (cosine of
rows = user-kNN). Two ways to score a candidate against the seeds:

- ``"centroid"`` (default) — cosine to the mean of the seeds' unit vectors: one matrix-vector product.
- ``"knn"`` — mean cosine to the candidate's ``neighbours`` most similar seeds: keeps distinct sub-groups of a
  varied seed list apart instead of averaging them into one.

Candidates can be restricted to an audience (for example the users of a :class:`~adrec.profiles.Segment`, via
:func:`~adrec.profiles.resolve`), so targeting rules still hold. Seeds are never part of the result.

    vectors = UserVectors.from_model(model, train.users)
    result = lookalike(vectors, seed_ids, 10_000, candidates=resolve(store, Segment(genders={"female"})))
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from adrec.data.interactions import IdMap, Interactions
from adrec.data.linalg import normalize_rows, top_k
from adrec.exceptions import NotFoundError, ValidationError

if TYPE_CHECKING:
    from adrec.models.base import Recommender
    from adrec.store.base import Store

__all__ = ["LOOKALIKE_METHODS", "LookalikeResult", "UserVectors", "lookalike"]

LOOKALIKE_METHODS = ("centroid", "knn")
_CHUNK = 4096


def _unit_rows(x: npt.NDArray[np.float32] | sp.csr_matrix) -> npt.NDArray[np.float32] | sp.csr_matrix:
    if sp.issparse(x):
        m = sp.csr_matrix(x, dtype=np.float32)
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        return sp.csr_matrix(sp.diags(np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0)) @ m)
    return normalize_rows(x)


@dataclass
class UserVectors:
    """One unit-length vector per user (dense ``(n, d)`` or sparse CSR), with the users' external ids."""

    ids: IdMap
    vectors: npt.NDArray[np.float32] | sp.csr_matrix
    source: str = ""
    """Where the vectors came from, for messages (e.g. ``"bpr user embeddings"``)."""

    def __post_init__(self) -> None:
        if self.vectors.shape[0] != len(self.ids):
            raise ValidationError("vectors", f"has {self.vectors.shape[0]} rows for {len(self.ids)} user ids")
        self.vectors = _unit_rows(self.vectors)

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_model(cls, model: Recommender, users: IdMap) -> UserVectors:
        """A fitted model's user embeddings; :class:`ValidationError` for a model without them."""
        emb = model.user_embeddings
        if emb is None:
            raise ValidationError(
                "model", f"{model.name} has no user embeddings; use UserVectors.from_interactions (user-kNN)"
            )
        return cls(users, np.asarray(emb, dtype=np.float32), f"{model.name} user embeddings")

    @classmethod
    def from_interactions(cls, interactions: Interactions) -> UserVectors:
        """Each user's (binarised) interaction row: cosine between rows is user-kNN similarity."""
        rows = interactions.matrix.copy()
        rows.data[:] = 1.0
        return cls(interactions.users, rows, "interaction rows")

    @classmethod
    def from_store(cls, store: Store) -> UserVectors:
        """The embeddings stored in user profiles (consenting users who have one)."""
        ids: list[str] = []
        rows: list[Sequence[float]] = []
        for batch in store.iter_profiles():
            for p in batch:
                if p.embedding is not None and p.user.consent:
                    ids.append(p.user_id)
                    rows.append(p.embedding)
        if not rows:
            raise NotFoundError("no user profile in the store has an embedding; give vectors from a model instead")
        if len({len(r) for r in rows}) != 1:
            raise ValidationError("profile.embedding", "stored embeddings have different lengths")
        return cls(IdMap.from_ids(ids), np.asarray(rows, dtype=np.float32), "stored profile embeddings")


@dataclass(frozen=True)
class LookalikeResult:
    """The expanded audience, most similar first, and what happened to the seeds."""

    user_ids: list[str]
    scores: list[float]
    """Similarity to the seeds (cosine, in [-1, 1])."""
    seeds_used: list[str]
    unknown_seeds: list[str] = field(default_factory=list)
    """Seed ids without a vector (not in the model's data, or no consent): left out of the expansion."""


def lookalike(
    vectors: UserVectors,
    seed_ids: Sequence[str],
    size: int,
    *,
    candidates: Collection[str] | None = None,
    method: str = "centroid",
    neighbours: int = 10,
) -> LookalikeResult:
    """The ``size`` users most similar to the seeds (seeds excluded), best first.

    Parameters
    ----------
    vectors
        User vectors (see :class:`UserVectors`).
    seed_ids
        External ids of the seed users. Ids without a vector are reported in ``unknown_seeds``; at least one
        seed must have one.
    size
        Audience size wanted; fewer come back when fewer candidates exist.
    candidates
        If given, only these user ids may be returned (e.g. a segment's users, to keep targeting rules).
    method
        ``"centroid"`` or ``"knn"`` (see the module docstring).
    neighbours
        Seeds each candidate is compared with under ``"knn"``.
    """
    if size < 1:
        raise ValidationError("size", f"must be >= 1 (got {size})")
    if method not in LOOKALIKE_METHODS:
        raise ValidationError("method", f"must be one of {LOOKALIKE_METHODS} (got {method!r})")
    if neighbours < 1:
        raise ValidationError("neighbours", f"must be >= 1 (got {neighbours})")
    seeds = list(dict.fromkeys(seed_ids))
    known = [s for s in seeds if s in vectors.ids]
    unknown = [s for s in seeds if s not in vectors.ids]
    if not known:
        raise NotFoundError(
            f"none of the {len(seeds)} seed users has a vector ({vectors.source or 'user vectors'} of "
            f"{len(vectors):,} users); check the ids"
        )
    seed_idx = vectors.ids.transform(known)
    allowed = np.ones(len(vectors), dtype=bool)
    if candidates is not None:
        allowed[:] = False
        idx = vectors.ids.transform(list(candidates), missing=-1)
        allowed[idx[idx >= 0]] = True
    allowed[seed_idx] = False
    pool = np.flatnonzero(allowed)
    if pool.size == 0:
        return LookalikeResult([], [], known, unknown)
    scores = _scores(vectors.vectors, seed_idx, pool, method, neighbours)
    order, best = top_k(scores[None, :], size)
    keep = np.isfinite(best[0])
    chosen = pool[order[0][keep]]
    return LookalikeResult(vectors.ids.inverse(chosen).tolist(), [float(s) for s in best[0][keep]], known, unknown)


def _scores(
    v: npt.NDArray[np.float32] | sp.csr_matrix,
    seeds: npt.NDArray[np.int64],
    pool: npt.NDArray[np.int64],
    method: str,
    m: int,
) -> npt.NDArray[np.float32]:
    seed_rows = v[seeds]
    if method == "centroid":
        centroid = np.asarray(seed_rows.mean(axis=0), dtype=np.float32).ravel()
        norm = float(np.linalg.norm(centroid))
        return np.asarray(v[pool] @ (centroid / norm if norm > 0 else centroid), dtype=np.float32).ravel()
    seed_t = seed_rows.T
    k = min(m, len(seeds))
    out = np.empty(len(pool), dtype=np.float32)
    for start in range(0, len(pool), _CHUNK):
        block = v[pool[start : start + _CHUNK]] @ seed_t
        sims = np.asarray(sp.csr_matrix(block).toarray() if sp.issparse(block) else block, dtype=np.float32)
        out[start : start + _CHUNK] = np.sort(sims, axis=1)[:, -k:].mean(axis=1)
    return out
