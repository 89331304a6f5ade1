"""Durable storage of the ad market and its event log, opened by URL (see :func:`open_store`)."""

from adrec.store.base import (
    ApiKeyRecord,
    CtrExample,
    DailyDelivery,
    Delivery,
    ErasureReport,
    Feedback,
    FeedbackResult,
    IngestResult,
    MarketStats,
    Store,
    demographic_segment,
    open_store,
    register_backend,
    registered_schemes,
)

__all__ = [
    "ApiKeyRecord",
    "CtrExample",
    "DailyDelivery",
    "Delivery",
    "ErasureReport",
    "Feedback",
    "FeedbackResult",
    "IngestResult",
    "MarketStats",
    "Store",
    "demographic_segment",
    "open_store",
    "register_backend",
    "registered_schemes",
]
