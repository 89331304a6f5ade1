"""Recommenders behind one contract (:class:`~adrec.models.base.Recommender`), registered by name."""

from adrec.models.base import NotFittedError, Recommender, get_model, register, registered_models, top_k
from adrec.models.popularity import Popularity

__all__ = ["NotFittedError", "Popularity", "Recommender", "get_model", "register", "registered_models", "top_k"]
