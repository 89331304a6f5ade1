"""Click-rate models on features of the user, the ad and the context (:mod:`adrec.models.ctr.features`), behind
one contract (:class:`ClickModel`), registered by name: ``lr``, ``fm``, ``dcnv2`` and the peer ``lightgbm``."""

from adrec.models.ctr.dataset import ClickDataset
from adrec.models.ctr.features import DENSE, FIELDS, REFERENCE_POSITION, AdBlock, Examples, FeatureSpec, UserBlock
from adrec.models.ctr.model import (
    DCNV2,
    FM,
    ClickModel,
    LightGBMClickModel,
    LogisticRegression,
    get_click_model,
    load_click_model,
    register_click_model,
    registered_click_models,
)

__all__ = [
    "DCNV2",
    "DENSE",
    "FIELDS",
    "FM",
    "REFERENCE_POSITION",
    "AdBlock",
    "ClickDataset",
    "ClickModel",
    "Examples",
    "FeatureSpec",
    "LightGBMClickModel",
    "LogisticRegression",
    "UserBlock",
    "get_click_model",
    "load_click_model",
    "register_click_model",
    "registered_click_models",
]
