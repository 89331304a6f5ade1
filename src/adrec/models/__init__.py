"""Recommenders behind one contract (:class:`~adrec.models.base.Recommender`), registered by name."""

from adrec.models.base import NotFittedError, Recommender, get_model, register, registered_models, top_k
from adrec.models.bpr import BPR
from adrec.models.bspm import BSPM
from adrec.models.ease import EASE
from adrec.models.fusion import MMR, Fusion
from adrec.models.gan import CFGAN
from adrec.models.graph_filters import GFCF
from adrec.models.itemknn import ItemKNN
from adrec.models.lightgcn import LightGCN
from adrec.models.popularity import Popularity

__all__ = [
    "BPR",
    "BSPM",
    "CFGAN",
    "EASE",
    "GFCF",
    "MMR",
    "Fusion",
    "ItemKNN",
    "LightGCN",
    "NotFittedError",
    "Popularity",
    "Recommender",
    "get_model",
    "register",
    "registered_models",
    "top_k",
]
