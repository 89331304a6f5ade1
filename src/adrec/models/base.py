"""The one contract every recommender implements, and the registry of models by name.

A model learns from a user × item :class:`~adrec.data.interactions.Interactions` matrix and answers, for a batch
of users, the top-``k`` items with their scores::

    model = get_model("lightgcn", factors=64).fit(train)
    ids, scores = model.recommend(np.arange(100), k=20, exclude=train.matrix[:100])   # (100, 20) each

Conventions (shared with implicit and scikit-learn): ``__init__`` only stores keyword hyper-parameters; ``fit``
validates, learns and returns ``self``; learned state ends in ``_``. ``save``/``load`` write ``params.json`` plus
``arrays.npz`` (no pickle).
"""

from __future__ import annotations

import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar, overload

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from adrec.data.interactions import Interactions, as_matrix
from adrec.data.linalg import EXCLUDED, top_k
from adrec.exceptions import NotFittedError, NotFoundError, ValidationError

__all__ = [
    "EXCLUDED",
    "FactorRecommender",
    "NotFittedError",
    "Recommender",
    "Validator",
    "check_device",
    "get_model",
    "register",
    "registered_models",
    "top_k",
    "torch_threads",
]

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


class Recommender(ABC):
    """Base of every model. Subclasses implement :meth:`_fit` and :meth:`_score_users`.

    Parameters are keyword-only hyper-parameters stored unchanged by ``__init__`` (so ``get_params`` and
    ``save`` can recover them); arrays learned by ``fit`` live in attributes ending in ``_`` listed in
    :attr:`_learned`.
    """

    name: ClassVar[str] = ""
    _learned: ClassVar[tuple[str, ...]] = ()

    n_users_: int
    n_items_: int

    # -- the contract ------------------------------------------------------------------------------------
    def fit(self, interactions: Interactions | sp.spmatrix) -> Self:
        """Learn from a user × item matrix (an :class:`Interactions` or a SciPy sparse matrix); return self."""
        matrix = as_matrix(interactions)
        if matrix.shape[0] == 0 or matrix.shape[1] == 0:
            raise ValidationError("interactions", f"is empty (shape {matrix.shape})")
        if matrix.nnz == 0:
            raise ValidationError("interactions", "has no interactions to learn from")
        self.n_users_, self.n_items_ = int(matrix.shape[0]), int(matrix.shape[1])
        self._fit(matrix)
        return self

    @overload
    def recommend(
        self,
        user_idx: int,
        k: int = 10,
        *,
        exclude: sp.spmatrix | None = None,
        candidates: npt.ArrayLike | None = None,
    ) -> tuple[IntArray, FloatArray]: ...
    @overload
    def recommend(
        self,
        user_idx: npt.ArrayLike,
        k: int = 10,
        *,
        exclude: sp.spmatrix | None = None,
        candidates: npt.ArrayLike | None = None,
    ) -> tuple[IntArray, FloatArray]: ...
    def recommend(
        self,
        user_idx: int | npt.ArrayLike,
        k: int = 10,
        *,
        exclude: sp.spmatrix | None = None,
        candidates: npt.ArrayLike | None = None,
    ) -> tuple[IntArray, FloatArray]:
        """Top-``k`` items for each user, best first.

        Parameters
        ----------
        user_idx
            One user index, or an array of shape ``(n,)``.
        k
            List length; capped at the number of items that can be recommended.
        exclude
            Items never to recommend, as a sparse matrix with **one row per user in** ``user_idx`` (for example
            ``train.matrix[user_idx]`` to hide what users already interacted with).
        candidates
            If given, an array of item indices: only these may be recommended (shared by all users).

        Returns
        -------
        ids, scores
            Arrays of shape ``(n, k')`` with ``k' = min(k, number of items or candidates)``. Excluded items are
            never returned: a row with fewer than ``k'`` eligible items is padded with id ``-1`` and score
            ``-inf``. For a scalar ``user_idx`` the arrays are 1-D and hold only the eligible items.
        """
        scalar = np.ndim(user_idx) == 0
        users = self._check_users(np.atleast_1d(np.asarray(user_idx, dtype=np.int64)))
        if k < 1:
            raise ValidationError("k", f"must be >= 1 (got {k})")
        scores = self._score_users(users).astype(np.float32, copy=False)
        if candidates is not None:
            cand = np.unique(np.asarray(candidates, dtype=np.int64))
            self._check_items(cand)
            scores = scores[:, cand]
        if exclude is not None:
            ex = sp.csr_matrix(exclude)
            if ex.shape != (len(users), self.n_items_):
                raise ValidationError(
                    "exclude", f"must have shape ({len(users)}, {self.n_items_}), one row per user; got {ex.shape}"
                )
            if candidates is not None:
                ex = ex[:, cand]
            scores = np.array(scores, dtype=np.float32)  # never write into state a model returned by reference
            rows, cols = ex.nonzero()
            scores[rows, cols] = EXCLUDED
        ids, vals = top_k(scores, k)
        if candidates is not None:
            ids = cand[ids]
        invalid = np.isneginf(vals)
        ids[invalid] = -1
        if scalar:
            keep = ~invalid[0]
            return ids[0][keep], vals[0][keep]
        return ids, vals

    def score(self, user_idx: npt.ArrayLike, item_idx: npt.ArrayLike | None = None) -> FloatArray:
        """Scores: ``(n_users_batch, n_items)`` for all items, or ``(n,)`` for aligned ``(user, item)`` pairs."""
        users = self._check_users(np.atleast_1d(np.asarray(user_idx, dtype=np.int64)))
        if item_idx is None:
            return self._score_users(users).astype(np.float32, copy=False)
        items = np.atleast_1d(np.asarray(item_idx, dtype=np.int64))
        self._check_items(items)
        if items.shape != users.shape:
            raise ValidationError("item_idx", f"must align with user_idx: shapes {items.shape} vs {users.shape}")
        return self._score_pairs(users, items).astype(np.float32, copy=False)

    @property
    def user_embeddings(self) -> FloatArray | None:
        """``(n_users, d)`` user vectors where the model has them (scores are then dot products), else None."""
        return None

    @property
    def item_embeddings(self) -> FloatArray | None:
        """``(n_items, d)`` item vectors where the model has them, else None."""
        return None

    # -- for subclasses ----------------------------------------------------------------------------------
    @abstractmethod
    def _fit(self, matrix: sp.csr_matrix) -> None:
        """Learn from a CSR matrix of shape ``(n_users_, n_items_)``."""

    @abstractmethod
    def _score_users(self, users: IntArray) -> npt.NDArray[np.floating[Any]]:
        """Dense scores ``(len(users), n_items_)``; higher is better."""

    def _score_pairs(self, users: IntArray, items: IntArray) -> npt.NDArray[np.floating[Any]]:
        """Scores of aligned pairs; override when cheaper than scoring all items."""
        out = np.empty(len(users), dtype=np.float32)
        for start in range(0, len(users), 1024):
            sl = slice(start, start + 1024)
            full = self._score_users(users[sl])
            out[sl] = full[np.arange(len(full)), items[sl]]
        return out

    # -- checks ------------------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "n_items_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit() or load() first")

    def _check_users(self, users: IntArray) -> IntArray:
        self._check_fitted()
        if users.size and (users.min() < 0 or users.max() >= self.n_users_):
            raise ValidationError("user_idx", f"must be in [0, {self.n_users_}); got {users.min()}..{users.max()}")
        return users

    def _check_items(self, items: IntArray) -> None:
        if items.size and (items.min() < 0 or items.max() >= self.n_items_):
            raise ValidationError("item_idx", f"must be in [0, {self.n_items_}); got {items.min()}..{items.max()}")

    # -- parameters and persistence ----------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """The keyword hyper-parameters given to ``__init__``."""
        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self"}

    def save(self, path: str | Path) -> Path:
        """Write ``params.json`` and ``arrays.npz`` into the folder ``path``; return it."""
        self._check_fitted()
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        meta = {
            "model": self.name,
            "params": self.get_params(),
            "n_users": self.n_users_,
            "n_items": self.n_items_,
            "extra": self._extra_state(),
        }
        (root / "params.json").write_text(json.dumps(meta, indent=2, default=_jsonable))
        arrays: dict[str, Any] = {name: _to_numpy(getattr(self, name)) for name in self._learned}
        np.savez(root / "arrays.npz", allow_pickle=False, **arrays)
        return root

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Load a model saved by :meth:`save` (any registered model when called on :class:`Recommender`)."""
        root = Path(path)
        try:
            meta = json.loads((root / "params.json").read_text())
        except FileNotFoundError:
            raise NotFoundError(f"no saved model at {root} (params.json missing)") from None
        model_cls = _REGISTRY.get(meta["model"]) if cls is Recommender else cls
        if model_cls is None:
            raise NotFoundError(f"{root} holds a {meta['model']!r} model, which is not registered")
        model = model_cls(**meta["params"])
        model.n_users_, model.n_items_ = int(meta["n_users"]), int(meta["n_items"])
        with np.load(root / "arrays.npz", allow_pickle=False) as npz:
            for name in model._learned:
                model._set_learned(name, npz[name])
        model._restore_extra_state(meta.get("extra") or {})
        return model

    def _set_learned(self, name: str, value: npt.NDArray[Any]) -> None:
        setattr(self, name, value)

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _restore_extra_state(self, state: dict[str, Any]) -> None:
        return None

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


Validator = Callable[[Recommender, Interactions, Interactions], float]
"""``validator(model, train, valid) -> float``: a model's score on held-out interactions ``valid`` with those of
``train`` excluded from its recommendations, higher is better; its ``name`` attribute, if it has one, labels the
metric in training logs. Models that stop early take one as a hyper-parameter
(:class:`~adrec.models.lightgcn.LightGCN`); measuring belongs to :mod:`adrec.evaluation`
(:class:`~adrec.evaluation.ranking.RecallValidator`), which the models package does not import."""


class FactorRecommender(Recommender):
    """A model whose scores are dot products of learned user and item vectors (``user_factors_``,
    ``item_factors_``), which it exposes as its embeddings. Subclasses still implement the scoring."""

    _learned: ClassVar[tuple[str, ...]] = ("user_factors_", "item_factors_")

    user_factors_: FloatArray
    item_factors_: FloatArray

    @property
    def user_embeddings(self) -> FloatArray | None:
        self._check_fitted()
        return self.user_factors_

    @property
    def item_embeddings(self) -> FloatArray | None:
        self._check_fitted()
        return self.item_factors_


def check_device(device: str) -> None:
    """Raise :class:`ValidationError` unless ``device`` is ``"cpu"`` or ``"cuda[:N]"``."""
    if device != "cpu" and not device.startswith("cuda"):
        raise ValidationError("device", f"must be 'cpu' or 'cuda[:N]'; got {device!r}")


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (None: leave the setting alone), then restore the old count."""
    import torch

    threads = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _to_numpy(value: Any) -> npt.NDArray[Any]:
    if hasattr(value, "detach"):
        return np.asarray(value.detach().cpu().numpy())
    if sp.issparse(value):
        raise ValidationError("save", "sparse learned state must be stored as its arrays")
    return np.asarray(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if callable(value):  # a validator is code, not state: a loaded model has none (it is fitted already)
        return None
    raise TypeError(f"cannot store {type(value).__name__} in params.json")


R = TypeVar("R", bound=type[Recommender])
_REGISTRY: dict[str, type[Recommender]] = {}


def register(cls: R) -> R:
    """Class decorator: make a model available by its ``name`` to :func:`get_model` and the CLI."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a class attribute 'name'")
    _REGISTRY[cls.name] = cls
    return cls


def registered_models() -> dict[str, type[Recommender]]:
    """Name → class of every registered model."""
    import adrec.models  # noqa: F401  (importing the package registers the built-in models)

    return dict(sorted(_REGISTRY.items()))


def get_model(name: str, **params: Any) -> Recommender:
    """A new, unfitted model of the registered ``name`` with hyper-parameters ``params``."""
    models = registered_models()
    if name not in models:
        raise NotFoundError(f"unknown model {name!r}; registered: {', '.join(models)}")
    factory: Callable[..., Recommender] = models[name]
    try:
        return factory(**params)
    except TypeError as err:
        raise ValidationError(f"{name}.params", str(err)) from None
