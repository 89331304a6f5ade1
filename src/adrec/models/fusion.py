"""Recommenders built on other recommenders: score-blending fusion of two candidate sources, and MMR re-ranking.

- :class:`Fusion` (``"fusion"``) blends two models' per-user normalised scores with weight ``λ``; its intended use
  is a GAN candidate generator (``cfgan``) blended into a graph model (``lightgcn``, ``ease``), but any two
  registered models work.
- :class:`MMR` (``"mmr"``) re-ranks a model's top items by maximal marginal relevance (Carbonell & Goldstein,
  SIGIR 1998): the non-GAN way to diversify lists.
- :func:`normalize_scores` and :func:`mmr_order` are the pure functions behind them.

Both are ordinary registered models: ``fit`` fits the wrapped models, and ``save`` stores each wrapped model's
own ``params.json`` in this model's ``params.json`` (under ``extra``) and its ``arrays.npz`` as a byte array in
this model's ``arrays.npz``, so nothing is pickled and ``Recommender.load`` needs no nested folders.
``from_fitted`` builds either around models that are already fitted (to sweep ``λ`` without refitting).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from adrec.data.interactions import Interactions, as_matrix
from adrec.data.linalg import EXCLUDED, degree_normalize, top_k
from adrec.exceptions import ValidationError
from adrec.models.base import IntArray, Recommender, get_model, register

__all__ = ["MMR", "Fusion", "mmr_order", "normalize_scores"]

NORMALIZATIONS = ("rank", "minmax")
SIMILARITIES = ("cosine", "embeddings")
_MAX_DENSE_SIMILARITY = 10_000  # items: the dense item-item cosine matrix is n_items² float32


def normalize_scores(scores: npt.NDArray[np.floating[Any]], method: str = "rank") -> npt.NDArray[np.float64]:
    """Each row of ``scores`` ``(b, n)`` mapped onto ``[0, 1]``, order kept.

    ``"rank"``: the item's rank from the bottom over ``n - 1`` (scale-free; ties: the lower index ranks higher, as
    in :func:`~adrec.data.linalg.top_k`).
    ``"minmax"``: ``(s - min) / (max - min)`` per row (a constant row maps to 0).
    """
    s = np.asarray(scores, dtype=np.float64)
    n = s.shape[1]
    if method == "rank":
        ranks = np.empty(s.shape, dtype=np.float64)
        order = np.argsort(-s, axis=1, kind="stable")  # best first; ties: lower index first, as in top_k
        np.put_along_axis(ranks, order, np.arange(n - 1, -1, -1, dtype=np.float64)[None, :], axis=1)
        ranks /= max(n - 1, 1)
        return ranks
    if method == "minmax":
        low, high = s.min(axis=1, keepdims=True), s.max(axis=1, keepdims=True)
        span = np.where(high > low, high - low, 1.0)
        scaled: npt.NDArray[np.float64] = (s - low) / span
        return scaled
    raise ValidationError("normalization", f"must be one of {NORMALIZATIONS} (got {method!r})")


def mmr_order(
    relevance: npt.NDArray[np.floating[Any]], similarity: npt.NDArray[np.floating[Any]], strength: float
) -> npt.NDArray[np.int64]:
    """Greedy maximal-marginal-relevance order of each row's candidates.

    At each step picks the candidate maximising ``(1 - strength) · rel_i - strength · max_{j chosen} sim_ij``
    (no penalty before the first pick; ties: the earlier candidate).

    Parameters
    ----------
    relevance
        ``(b, m)`` relevance of each user's ``m`` candidates; ``-inf`` marks a missing candidate (ordered last).
    similarity
        ``(b, m, m)`` pairwise similarities of each user's candidates.
    strength
        ``0`` keeps the relevance order; ``1`` ignores relevance after the first pick.

    Returns
    -------
    ``(b, m)`` positions into the candidates, in the chosen order.
    """
    rel = np.asarray(relevance, dtype=np.float64)
    b, m = rel.shape
    missing = np.isneginf(rel)
    rel = np.where(missing, 0.0, rel)
    rows = np.arange(b)
    chosen = np.zeros((b, m), dtype=bool)
    max_sim = np.zeros((b, m), dtype=np.float64)
    order = np.empty((b, m), dtype=np.int64)
    for step in range(m):
        value = (1.0 - strength) * rel - strength * max_sim
        value[missing] = -1e300  # after every real candidate, before the chosen ones
        value[chosen] = -np.inf
        pick = np.argmax(value, axis=1)
        order[:, step] = pick
        chosen[rows, pick] = True
        np.maximum(max_sim, similarity[rows, pick], out=max_sim)
    return order


def _pack(model: Recommender) -> tuple[dict[str, Any], npt.NDArray[np.uint8]]:
    """A fitted model as its ``params.json`` content and the bytes of its ``arrays.npz`` (via its own ``save``)."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save(tmp)
        meta: dict[str, Any] = json.loads((Path(tmp) / "params.json").read_text())
        blob = np.frombuffer((Path(tmp) / "arrays.npz").read_bytes(), dtype=np.uint8).copy()
    return meta, blob


def _unpack(meta: dict[str, Any], blob: npt.NDArray[np.uint8]) -> Recommender:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "params.json").write_text(json.dumps(meta))
        (Path(tmp) / "arrays.npz").write_bytes(np.asarray(blob, dtype=np.uint8).tobytes())
        return Recommender.load(tmp)


class _Composite(Recommender):
    """Base of the models that wrap fitted models (one per role); saves them inside its own two files."""

    _roles: ClassVar[tuple[str, ...]] = ()

    def _wrapped(self) -> dict[str, Recommender]:
        return {role: getattr(self, f"{role}_model_") for role in self._roles}

    def save(self, path: str | Path) -> Path:
        self._check_fitted()
        metas = {}
        for role, model in self._wrapped().items():
            metas[role], blob = _pack(model)
            setattr(self, f"{role}_state_", blob)
        self._metas = metas
        try:
            return super().save(path)
        finally:
            for role in self._roles:
                delattr(self, f"{role}_state_")
            del self._metas

    def _extra_state(self) -> dict[str, Any]:
        return {"models": self._metas}

    def _restore_extra_state(self, state: dict[str, Any]) -> None:
        for role in self._roles:
            setattr(self, f"{role}_model_", _unpack(state["models"][role], getattr(self, f"{role}_state_")))
            delattr(self, f"{role}_state_")

    def _adopt(self, role: str, model: Recommender) -> None:
        model._check_fitted()
        if hasattr(self, "n_items_") and (model.n_users_, model.n_items_) != (self.n_users_, self.n_items_):
            raise ValidationError(
                role, f"is fitted on {model.n_users_} x {model.n_items_}, not {self.n_users_} x {self.n_items_}"
            )
        self.n_users_, self.n_items_ = model.n_users_, model.n_items_
        setattr(self, f"{role}_model_", model)


@register
class Fusion(_Composite):
    """Blend of two models' scores: ``(1 - λ) · norm(base) + λ · norm(generator)`` per user.

    Meant for mixing a GAN candidate generator into a graph model's candidates (the GAN's lists differ from the
    graph model's, so a little of them can widen coverage at a small cost in accuracy). ``λ = 0`` ranks as the
    base model, ``λ = 1`` as the generator. Scores are normalised per user over all items before blending: by
    rank (default; scale-free, so the two models' score scales do not matter) or min-max.

    Parameters
    ----------
    base
        Registered name of the main model (default ``"lightgcn"``).
    generator
        Registered name of the model blended in (default ``"cfgan"``).
    weight
        ``λ`` in ``[0, 1]``, the generator's share (default 0.2).
    normalization
        ``"rank"`` (default) or ``"minmax"``.
    base_params, generator_params
        Hyper-parameters of the two models (JSON-serialisable; default: their defaults).
    """

    name: ClassVar[str] = "fusion"
    _learned: ClassVar[tuple[str, ...]] = ("base_state_", "generator_state_")
    _roles: ClassVar[tuple[str, ...]] = ("base", "generator")

    base_model_: Recommender
    generator_model_: Recommender

    def __init__(
        self,
        *,
        base: str = "lightgcn",
        generator: str = "cfgan",
        weight: float = 0.2,
        normalization: str = "rank",
        base_params: dict[str, Any] | None = None,
        generator_params: dict[str, Any] | None = None,
    ) -> None:
        self.base = base
        self.generator = generator
        self.weight = weight
        self.normalization = normalization
        self.base_params = base_params
        self.generator_params = generator_params

    @classmethod
    def from_fitted(
        cls, base: Recommender, generator: Recommender, *, weight: float = 0.2, normalization: str = "rank"
    ) -> Fusion:
        """A fitted fusion of two models already fitted on the same users and items (nothing is refitted)."""
        fusion = cls(
            base=base.name,
            generator=generator.name,
            weight=weight,
            normalization=normalization,
            base_params=base.get_params(),
            generator_params=generator.get_params(),
        )
        fusion._check_params()
        fusion._adopt("base", base)
        fusion._adopt("generator", generator)
        return fusion

    def _check_params(self) -> None:
        if not 0.0 <= self.weight <= 1.0:
            raise ValidationError("weight", f"must be in [0, 1] (got {self.weight})")
        if self.normalization not in NORMALIZATIONS:
            raise ValidationError("normalization", f"must be one of {NORMALIZATIONS} (got {self.normalization!r})")

    def _fit(self, matrix: sp.csr_matrix) -> None:
        self._check_params()
        self.base_model_ = get_model(self.base, **(self.base_params or {})).fit(matrix)
        self.generator_model_ = get_model(self.generator, **(self.generator_params or {})).fit(matrix)

    def _score_users(self, users: IntArray) -> npt.NDArray[np.floating[Any]]:
        blended = np.zeros((len(users), self.n_items_), dtype=np.float64)
        for model, share in ((self.base_model_, 1.0 - self.weight), (self.generator_model_, self.weight)):
            if share > 0:
                blended += share * normalize_scores(model.score(users), self.normalization)
        return blended.astype(np.float32)


@register
class MMR(_Composite):
    """A model's lists re-ranked by maximal marginal relevance (Carbonell & Goldstein, SIGIR 1998).

    For each user, the ``depth`` best items the user has not interacted with in the training data are re-ordered
    greedily by ``(1 - strength) · rel_i - strength · max_{j already chosen} sim_ij``, with ``rel`` the base
    model's scores min-max normalised within the pool. Scores encode the resulting ranking: the pool in MMR
    order, then the user's other unseen items in the base model's order, then the user's training items.

    Parameters
    ----------
    base
        Registered name of the model to re-rank (default ``"lightgcn"``).
    strength
        Diversity weight in ``[0, 1]`` (default 0.3; 0 keeps the base model's order).
    depth
        Candidates re-ranked per user (default 100; should exceed the list length served).
    similarity
        ``"cosine"`` (default: item-item cosine of the binary training matrix; catalogues up to 10,000 items) or
        ``"embeddings"`` (cosine of the base model's item embeddings).
    base_params
        Hyper-parameters of the base model (JSON-serialisable; default: its defaults).
    """

    name: ClassVar[str] = "mmr"
    _learned: ClassVar[tuple[str, ...]] = ("base_state_", "train_indptr_", "train_indices_")
    _roles: ClassVar[tuple[str, ...]] = ("base",)

    base_model_: Recommender
    train_indptr_: npt.NDArray[np.int64]
    train_indices_: npt.NDArray[np.int32]
    _similarity: npt.NDArray[np.float32] | None = None

    def __init__(
        self,
        *,
        base: str = "lightgcn",
        strength: float = 0.3,
        depth: int = 100,
        similarity: str = "cosine",
        base_params: dict[str, Any] | None = None,
    ) -> None:
        self.base = base
        self.strength = strength
        self.depth = depth
        self.similarity = similarity
        self.base_params = base_params

    @classmethod
    def from_fitted(
        cls,
        base: Recommender,
        interactions: Interactions | sp.spmatrix,
        *,
        strength: float = 0.3,
        depth: int = 100,
        similarity: str = "cosine",
    ) -> MMR:
        """MMR over a model already fitted on ``interactions`` (nothing is refitted)."""
        mmr = cls(base=base.name, strength=strength, depth=depth, similarity=similarity, base_params=base.get_params())
        mmr._check_params()
        mmr._adopt("base", base)
        matrix = sp.csr_matrix(as_matrix(interactions))
        if matrix.shape != (mmr.n_users_, mmr.n_items_):
            raise ValidationError("interactions", f"shape {matrix.shape} differs from the model's")
        mmr._keep_training(matrix)
        return mmr

    def _check_params(self) -> None:
        if not 0.0 <= self.strength <= 1.0:
            raise ValidationError("strength", f"must be in [0, 1] (got {self.strength})")
        if self.depth < 1:
            raise ValidationError("depth", f"must be >= 1 (got {self.depth})")
        if self.similarity not in SIMILARITIES:
            raise ValidationError("similarity", f"must be one of {SIMILARITIES} (got {self.similarity!r})")

    def _fit(self, matrix: sp.csr_matrix) -> None:
        self._check_params()
        self.base_model_ = get_model(self.base, **(self.base_params or {})).fit(matrix)
        self._keep_training(matrix)

    def _keep_training(self, matrix: sp.csr_matrix) -> None:
        binary = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
        binary.sum_duplicates()
        binary.eliminate_zeros()
        binary.sort_indices()
        self.train_indptr_ = binary.indptr.astype(np.int64)
        self.train_indices_ = binary.indices.astype(np.int32)
        self._similarity = None
        if self.similarity == "embeddings" and self.base_model_.item_embeddings is None:
            raise ValidationError(
                "similarity", f"'embeddings' needs a base model with item embeddings; {self.base!r} has none"
            )

    def _set_learned(self, name: str, value: npt.NDArray[Any]) -> None:
        super()._set_learned(name, value)
        self._similarity = None

    def _training(self) -> sp.csr_matrix:
        data = np.ones(len(self.train_indices_), dtype=np.float32)
        return sp.csr_matrix((data, self.train_indices_, self.train_indptr_), shape=(self.n_users_, self.n_items_))

    def _item_cosine(self) -> npt.NDArray[np.float32]:
        """Dense ``(n_items, n_items)`` cosine of the binary item columns of the training matrix (cached)."""
        if self._similarity is None:
            if self.n_items_ > _MAX_DENSE_SIMILARITY:
                raise ValidationError(
                    "similarity",
                    f"'cosine' builds a dense {self.n_items_:,}² matrix, over {_MAX_DENSE_SIMILARITY:,} items; "
                    "use similarity='embeddings' with a base model that has item embeddings",
                )
            train = self._training()
            scaled = degree_normalize(train, user_power=0.0, item_power=0.5, dtype=np.float64)[0]
            self._similarity = np.asarray((scaled.T @ scaled).toarray(), dtype=np.float32)
        return self._similarity

    def _pool_similarity(self, pool: IntArray) -> npt.NDArray[np.floating[Any]]:
        """``(b, m, m)`` similarities among each user's ``m`` candidates."""
        if self.similarity == "cosine":
            sim = self._item_cosine()
            return sim[pool[:, :, None], pool[:, None, :]]
        emb = self.base_model_.item_embeddings
        assert emb is not None  # checked in fit
        vectors = emb[pool].astype(np.float64)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=2, keepdims=True), 1e-12)
        pairs: npt.NDArray[np.float64] = np.einsum("bid,bjd->bij", vectors, vectors)
        return pairs

    def _score_users(self, users: IntArray) -> npt.NDArray[np.floating[Any]]:
        scores = np.array(self.base_model_.score(users), dtype=np.float32)
        seen = self._training()[users]
        seen_rows = np.repeat(np.arange(len(users)), np.diff(seen.indptr))
        out = normalize_scores(scores, "rank")
        out[seen_rows, seen.indices] -= 2.0  # training items after every unseen item
        scores[seen_rows, seen.indices] = EXCLUDED
        m = min(self.depth, self.n_items_)
        pool, values = top_k(scores, m)
        valid = ~np.isneginf(values)
        low = np.where(valid, values, np.inf).min(axis=1, keepdims=True)
        high = np.where(valid, values, -np.inf).max(axis=1, keepdims=True)
        span = np.where(high > low, high - low, 1.0)
        relevance = np.where(valid, (values - low) / span, -np.inf)
        order = mmr_order(relevance, self._pool_similarity(pool), self.strength)
        ranked = np.take_along_axis(pool, order, axis=1)
        keep = np.take_along_axis(valid, order, axis=1)
        position_score = 2.0 + (m - np.arange(m, dtype=np.float64)) / m  # in (2, 3], above every other item
        rows = np.broadcast_to(np.arange(len(users))[:, None], ranked.shape)
        out[rows[keep], ranked[keep]] = np.broadcast_to(position_score, ranked.shape)[keep]
        return out.astype(np.float32)
