"""Cold start: scoring ads that have no interactions yet, and users who have only a few (or none).

New ads (known by their content vectors, see :mod:`adrec.catalog.text`), two ways into a fitted model's space:

- ``method="ridge"`` — a ridge regression from content to the model's item embeddings, learned on the warm
  items; the new ad's score is ``user_embedding · W content`` (models with embeddings: BPR, LightGCN). The
  content-to-embedding map of DropoutNet/CB2CF, in its linear form.
- ``method="knn"`` — the ``k`` warm ads most similar in content; the new ad scores, for each user, the
  similarity-weighted mean of the user's scores of those ads. Works for every model.

New users:

- :class:`FoldIn` — scores from the first few events without retraining: embedding models solve the implicit-ALS
  least-squares problem for a user vector against the fixed item embeddings (Hu, Koren, Volinsky, ICDM 2008);
  item-based models (EASE, ItemKNN, GF-CF, BSPM) score the event row through their item-item operator.
- :class:`DemographicPrior` — before any event: items popular among training users who declared the same
  attributes, smoothed towards single attributes and then overall popularity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from adrec.data.interactions import Interactions, as_matrix
from adrec.data.linalg import normalize_rows
from adrec.data.schema import User
from adrec.exceptions import ValidationError
from adrec.models.base import FloatArray, IntArray, NotFittedError, Recommender
from adrec.models.graph_filters import ItemBasedRecommender
from adrec.models.popularity import Popularity

__all__ = [
    "AGE_BANDS",
    "ColdItemScorer",
    "DemographicPrior",
    "FoldIn",
    "WithNewItems",
    "blend",
    "ridge_map",
    "user_attributes",
]


def _content(x: npt.ArrayLike, name: str, dim: int | None = None) -> FloatArray:
    a = np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float32)  # type: ignore[union-attr]
    if a.ndim != 2:
        raise ValidationError(name, f"must be 2-D (items, dim); got shape {a.shape}")
    if dim is not None and a.shape[1] != dim:
        raise ValidationError(name, f"has {a.shape[1]} dimensions; the scorer was fitted on {dim}")
    if not np.isfinite(a).all():
        raise ValidationError(name, "holds NaN or infinite values")
    return a


def ridge_map(x: FloatArray, y: FloatArray, alpha: float) -> tuple[FloatArray, FloatArray]:
    """``W, b`` minimising ``|x W + b - y|² + alpha |W|²`` (intercept not penalised).

    Solved in the primal ``(XᵀX + αI)⁻¹ Xᵀ Y`` or, when there are fewer rows than features (TF-IDF content),
    the dual ``Xᵀ (X Xᵀ + αI)⁻¹ Y``; both are the same minimiser.
    """
    if alpha <= 0:
        raise ValidationError("alpha", f"must be > 0 (got {alpha})")
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    x_mean, y_mean = x64.mean(axis=0), y64.mean(axis=0)
    xc, yc = x64 - x_mean, y64 - y_mean
    n, d = xc.shape
    if n >= d:
        w = np.linalg.solve(xc.T @ xc + alpha * np.eye(d), xc.T @ yc)
    else:
        w = xc.T @ np.linalg.solve(xc @ xc.T + alpha * np.eye(n), yc)
    b = y_mean - x_mean @ w
    return w.astype(np.float32), b.astype(np.float32)


class ColdItemScorer:
    """Scores of new items (content only) for the users of a fitted model.

    Parameters
    ----------
    method
        ``"ridge"`` (content → item embeddings; needs a model with embeddings) or ``"knn"`` (default).
    alpha
        Ridge penalty (``"ridge"``). Default 1.0.
    k_neighbors
        Warm items each new item borrows from (``"knn"``). Default 20.
    power
        ``"knn"`` weights are ``max(cos, 0) ** power``: larger values trust the closest neighbours more. Default 1.

    Examples
    --------
    >>> scorer = ColdItemScorer(method="knn").fit(model, item_content)  # doctest: +SKIP
    >>> scores = scorer.score(np.arange(10), new_content)  # (10, n_new)  # doctest: +SKIP
    """

    METHODS: ClassVar[tuple[str, ...]] = ("ridge", "knn")

    def __init__(self, *, method: str = "knn", alpha: float = 1.0, k_neighbors: int = 20, power: float = 1.0) -> None:
        self.method = method
        self.alpha = alpha
        self.k_neighbors = k_neighbors
        self.power = power

    def __repr__(self) -> str:
        return (
            f"ColdItemScorer(method={self.method!r}, alpha={self.alpha}, k_neighbors={self.k_neighbors}, "
            f"power={self.power})"
        )

    def fit(self, model: Recommender, item_content: npt.ArrayLike, warm_items: npt.ArrayLike | None = None) -> Self:
        """Learn from ``model`` (fitted) and the content ``(model.n_items_, dim)`` of its items.

        ``warm_items`` are the item indices to learn from (default: every item); leave out items the model saw no
        interaction of, whose embeddings are noise.
        """
        if self.method not in self.METHODS:
            raise ValidationError("method", f"must be one of {self.METHODS} (got {self.method!r})")
        if self.k_neighbors < 1:
            raise ValidationError("k_neighbors", f"must be >= 1 (got {self.k_neighbors})")
        if self.power <= 0:
            raise ValidationError("power", f"must be > 0 (got {self.power})")
        if not hasattr(model, "n_items_"):
            raise NotFittedError(f"{type(model).__name__} is not fitted yet; fit it before the cold-item scorer")
        content = _content(item_content, "item_content")
        if len(content) != model.n_items_:
            raise ValidationError("item_content", f"has {len(content)} rows for the model's {model.n_items_} items")
        warm = np.arange(model.n_items_) if warm_items is None else np.unique(np.asarray(warm_items, dtype=np.int64))
        if warm.size == 0 or warm.min() < 0 or warm.max() >= model.n_items_:
            raise ValidationError("warm_items", f"must be non-empty indices in [0, {model.n_items_})")
        self.model_ = model
        self.warm_ = warm
        self.dim_ = content.shape[1]
        if self.method == "ridge":
            items = model.item_embeddings
            if items is None:
                raise ValidationError(
                    "method",
                    f"'ridge' maps content to item embeddings, which {model.name or model} has none of; "
                    "use method='knn'",
                )
            self.weights_, self.bias_ = ridge_map(content[warm], np.asarray(items, dtype=np.float32)[warm], self.alpha)
        else:
            self.warm_content_ = normalize_rows(content[warm])
        return self

    def _check(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("ColdItemScorer is not fitted yet; call fit(model, item_content) first")

    def neighbours(self, new_content: npt.ArrayLike) -> sp.csr_matrix:
        """``(n_new, model.n_items_)`` weights over warm items, rows summing to 1 (``"knn"``)."""
        self._check()
        if self.method != "knn":
            raise ValidationError("method", "neighbours are defined for method='knn' only")
        q = normalize_rows(_content(new_content, "new_content", self.dim_))
        sims = np.maximum(q @ self.warm_content_.T, 0.0) ** self.power
        k = min(self.k_neighbors, sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(sims, top, axis=1)
        totals = vals.sum(axis=1, keepdims=True)
        # A new item like no warm one (all similarities <= 0) borrows evenly from its k "neighbours".
        vals = np.where(totals > 0, vals / np.where(totals > 0, totals, 1.0), 1.0 / k)
        rows = np.repeat(np.arange(len(q)), k)
        return sp.csr_matrix(
            (vals.ravel(), (rows, self.warm_[top.ravel()])), shape=(len(q), self.model_.n_items_), dtype=np.float32
        )

    def item_vectors(self, new_content: npt.ArrayLike) -> FloatArray:
        """Item embeddings ``(n_new, d)`` of new items in the model's space (models with embeddings)."""
        self._check()
        if self.method == "ridge":
            content = _content(new_content, "new_content", self.dim_)
            out: FloatArray = content @ self.weights_ + self.bias_
            return out
        items = self.model_.item_embeddings
        if items is None:
            raise ValidationError("model", f"{self.model_.name} has no item embeddings to place new items among")
        return np.asarray(self.neighbours(new_content) @ items, dtype=np.float32)

    def score(self, user_idx: npt.ArrayLike, new_content: npt.ArrayLike) -> FloatArray:
        """Scores ``(n_users, n_new)`` of the new items for users ``user_idx`` of the model."""
        self._check()
        users = np.atleast_1d(np.asarray(user_idx, dtype=np.int64))
        if self.method == "ridge":
            user_vectors = self.model_.user_embeddings
            assert user_vectors is not None  # checked in fit: ridge needs an embedding model
            self.model_._check_users(users)
            return np.asarray(user_vectors[users] @ self.item_vectors(new_content).T, dtype=np.float32)
        weights = self.neighbours(new_content)
        return np.asarray((weights @ self.model_.score(users).T).T, dtype=np.float32)


class WithNewItems(Recommender):
    """A fitted model plus new items scored by a :class:`ColdItemScorer`: items ``0..n-1`` are the model's,
    ``n..n+m-1`` the new ones, so the usual ``recommend`` can return an ad before its first click.

    A view over fitted state: it is built, not fitted, and is not saved (save the model and the content).
    """

    name: ClassVar[str] = "with-new-items"

    def __init__(self, *, scorer: ColdItemScorer | None = None, new_content: Any = None) -> None:
        self.scorer = scorer
        self.new_content = new_content
        if scorer is not None and new_content is not None:
            scorer._check()
            self._content = _content(new_content, "new_content", scorer.dim_)
            self.n_users_ = scorer.model_.n_users_
            self.n_items_ = scorer.model_.n_items_ + len(self._content)

    def _fit(self, matrix: sp.csr_matrix) -> None:
        raise ValidationError("WithNewItems", "is a view over a fitted model; fit the model, then build the view")

    def _score_users(self, users: IntArray) -> npt.NDArray[np.floating[Any]]:
        assert self.scorer is not None
        warm = self.scorer.model_.score(users)
        return np.hstack([warm, self.scorer.score(users, self._content)])


class FoldIn:
    """Scores for users known only by a few events, from a fitted model, without retraining.

    Parameters
    ----------
    regularization
        ``λ`` of the least-squares user vector (embedding models). Default 0.1.
    unobserved_weight
        Weight ``w0`` of the items a user did not interact with, as implicit ALS: the user vector solves
        ``(w0 VᵀV + V_hᵀV_h + λI) u = V_hᵀ r_h``. Default 0.01.

    Embedding models (``user_embeddings`` / ``item_embeddings``) get the least-squares vector; item-based models
    score the rows through their operator (:meth:`~adrec.models.graph_filters.ItemBasedRecommender.score_rows`);
    :class:`~adrec.models.popularity.Popularity` returns its counts.
    """

    def __init__(self, *, regularization: float = 0.1, unobserved_weight: float = 0.01) -> None:
        self.regularization = regularization
        self.unobserved_weight = unobserved_weight

    def __repr__(self) -> str:
        return f"FoldIn(regularization={self.regularization}, unobserved_weight={self.unobserved_weight})"

    def user_vectors(self, model: Recommender, history: sp.spmatrix | npt.ArrayLike) -> FloatArray:
        """Least-squares user vectors ``(b, d)`` for the rows of ``history`` ``(b, n_items)``."""
        if self.regularization <= 0 or self.unobserved_weight < 0:
            raise ValidationError("fold_in", f"needs regularization > 0 and unobserved_weight >= 0 (got {self!r})")
        items = model.item_embeddings
        if items is None:
            raise ValidationError("model", f"{model.name} has no item embeddings to fold users in against")
        rows = self._rows(model, history)
        v = np.asarray(items, dtype=np.float64)
        d = v.shape[1]
        base = self.unobserved_weight * (v.T @ v) + self.regularization * np.eye(d)
        out = np.zeros((rows.shape[0], d), dtype=np.float32)
        for b in range(rows.shape[0]):
            lo, hi = rows.indptr[b], rows.indptr[b + 1]
            if lo == hi:
                continue
            vh = v[rows.indices[lo:hi]]
            out[b] = np.linalg.solve(base + vh.T @ vh, vh.T @ rows.data[lo:hi].astype(np.float64))
        return out

    def score(self, model: Recommender, history: sp.spmatrix | npt.ArrayLike) -> FloatArray:
        """Scores ``(b, n_items)`` for the users whose events are the rows of ``history``."""
        rows = self._rows(model, history)
        if isinstance(model, Popularity):
            return np.tile(model.item_counts_, (rows.shape[0], 1))
        if model.item_embeddings is not None:
            items = np.asarray(model.item_embeddings, dtype=np.float32)
            return np.asarray(self.user_vectors(model, rows) @ items.T, dtype=np.float32)
        if isinstance(model, ItemBasedRecommender):
            return model.score_rows(rows)
        raise ValidationError("model", f"{model.name or type(model).__name__} supports no fold-in of new users")

    @staticmethod
    def _rows(model: Recommender, history: sp.spmatrix | npt.ArrayLike) -> sp.csr_matrix:
        model._check_fitted()
        rows = sp.csr_matrix(history, dtype=np.float32)
        if rows.shape[1] != model.n_items_:
            raise ValidationError("history", f"must have {model.n_items_} columns (one per item); got {rows.shape[1]}")
        rows.sort_indices()
        return rows


class DemographicPrior:
    """Items popular among users with the same declared attributes: the list for a user with no events.

    Each user is described by a set of attribute strings (e.g. ``{"gender=F", "age=25-34", "occupation=writer"}``).
    With item counts ``C`` and totals ``N`` over training users, and overall item shares ``p0``::

        p_a(i)   = (C_a(i) + m p0(i)) / (N_a + m)          for each single attribute a
        p_mid(i) = mean of p_a(i) over the user's attributes
        p(i)     = (C_key(i) + m p_mid(i)) / (N_key + m)   for the user's full set of attributes (the key)

    so small groups fall back to single attributes, and unknown attributes to overall popularity.

    Parameters
    ----------
    shrinkage
        ``m``: how many interactions the fallback counts as. Default 50.
    """

    def __init__(self, *, shrinkage: float = 50.0) -> None:
        self.shrinkage = shrinkage

    def __repr__(self) -> str:
        return f"DemographicPrior(shrinkage={self.shrinkage})"

    def fit(self, interactions: Interactions | sp.spmatrix, attributes: Sequence[Sequence[str]]) -> Self:
        """``attributes[u]`` are the declared attribute strings of training user ``u``."""
        if self.shrinkage < 0:
            raise ValidationError("shrinkage", f"must be >= 0 (got {self.shrinkage})")
        matrix = as_matrix(interactions).copy()
        matrix.data[:] = 1.0
        if len(attributes) != matrix.shape[0]:
            raise ValidationError("attributes", f"has {len(attributes)} entries for {matrix.shape[0]} users")
        counts = np.asarray(matrix.sum(axis=0), dtype=np.float64).ravel()
        if counts.sum() == 0:
            raise ValidationError("interactions", "has no interactions to learn from")
        self.n_items_ = matrix.shape[1]
        self.p0_ = counts / counts.sum()
        self.single_ = self._groups(matrix, [list(a) for a in attributes], self.p0_)
        self.keys_ = self._groups(matrix, [attributes_key(a) for a in attributes], None)
        return self

    def _groups(
        self, matrix: sp.csr_matrix, members: Sequence[Sequence[str]], prior: npt.NDArray[np.float64] | None
    ) -> dict[str, npt.NDArray[np.float64]]:
        """Item shares smoothed towards ``prior``, or raw item counts (no prior), per group name.

        ``members[u]`` are the groups of user ``u`` (a user may belong to several).
        """
        names: dict[str, int] = {}
        pairs = [(names.setdefault(g, len(names)), u) for u, groups in enumerate(members) for g in groups]
        if not pairs:
            return {}
        g_idx, u_idx = np.array(pairs).T
        member = sp.csr_matrix((np.ones(len(pairs)), (g_idx, u_idx)), shape=(len(names), matrix.shape[0]))
        sums = np.asarray((member @ matrix).toarray(), dtype=np.float64)
        if prior is None:
            return {name: sums[i] for name, i in names.items()}
        return {
            name: (sums[i] + self.shrinkage * prior) / (sums[i].sum() + self.shrinkage) for name, i in names.items()
        }

    def score(self, attributes: Sequence[Sequence[str]]) -> FloatArray:
        """Scores ``(len(attributes), n_items)``: the smoothed item shares of each new user's groups."""
        if not hasattr(self, "p0_"):
            raise NotFittedError("DemographicPrior is not fitted yet; call fit(interactions, attributes) first")
        out = np.empty((len(attributes), self.n_items_), dtype=np.float32)
        for b, attrs in enumerate(attributes):
            singles = [self.single_.get(a, self.p0_) for a in attrs]
            mid = np.mean(singles, axis=0) if singles else self.p0_
            key = self.keys_.get(attributes_key(attrs)[0])
            if key is None:
                out[b] = mid
            else:
                out[b] = (key + self.shrinkage * mid) / (key.sum() + self.shrinkage)
        return out


def attributes_key(attributes: Sequence[str]) -> list[str]:
    """The one group name of a full attribute set (order-free)."""
    return ["|".join(sorted(attributes))]


def blend(personal: npt.ArrayLike, prior: npt.ArrayLike, weight: float) -> FloatArray:
    """``(1 - weight) · z(personal) + weight · z(prior)``, with ``z`` standardising each row (mean 0, std 1).

    Mixes fold-in scores with a prior (demographic or popularity) whose scales differ: with one or two events
    a user's fold-in scores say little, and the prior keeps the list from straying far from what is liked.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValidationError("weight", f"must be in [0, 1] (got {weight})")

    def z(x: npt.ArrayLike) -> npt.NDArray[np.float64]:
        a = np.asarray(x, dtype=np.float64)
        std = a.std(axis=1, keepdims=True)
        out: npt.NDArray[np.float64] = (a - a.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)
        return out

    a, b = z(personal), z(prior)
    if a.shape != b.shape:
        raise ValidationError("prior", f"shape {b.shape} differs from the personal scores' {a.shape}")
    return ((1.0 - weight) * a + weight * b).astype(np.float32)


AGE_BANDS: tuple[int, ...] = (18, 25, 35, 45, 55)
"""Lower edges of the age bands of :func:`user_attributes` (``-17``, ``18-24``, ..., ``55+``)."""


def _age_band(age: int) -> str:
    lows = [0, *AGE_BANDS]
    i = int(np.searchsorted(AGE_BANDS, age, side="right"))
    return f"{lows[i]}+" if i == len(AGE_BANDS) else f"{lows[i]}-{lows[i + 1] - 1}"


def user_attributes(user: User, fields: Sequence[str] = ("age", "gender", "occupation")) -> list[str]:
    """Attribute strings of a user for :class:`DemographicPrior`, e.g. ``["age=25-34", "gender=female",
    "occupation=writer"]``: ``age`` is banded (:data:`AGE_BANDS`); other fields are read from the record, then
    from ``attrs``. Unknown values are left out."""
    out = []
    attrs: Mapping[str, str] = user.attrs
    for f in fields:
        value: Any = getattr(user, f, None)
        if value is None:
            value = attrs.get(f)
        if f == "age" and isinstance(value, int):
            value = _age_band(value)
        value = getattr(value, "value", value)
        if value not in (None, "", "unknown"):
            out.append(f"{f}={value}")
    return out
