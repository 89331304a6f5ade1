"""Ad serving: eligibility, candidate retrieval, eCPM ranking, re-ranking, GSP auction, tokens and the HTTP API."""

from adrec.feedback.tokens import TokenSigner, new_secret
from adrec.serving.auction import ecpm, gsp_prices
from adrec.serving.catalog import CatalogSnapshot, RequestContext
from adrec.serving.pipeline import Calibrator, Pipeline, PipelineConfig, Response, ServedAd, ServingModel

__all__ = [
    "Calibrator",
    "CatalogSnapshot",
    "Pipeline",
    "PipelineConfig",
    "RequestContext",
    "Response",
    "ServedAd",
    "ServingModel",
    "TokenSigner",
    "ecpm",
    "gsp_prices",
    "new_secret",
]
