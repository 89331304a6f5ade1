"""adrec: personalized ad recommendation in one system.

The public API; everything else is reachable through its sub-packages but may change between releases.
"""

from adrec.config import Settings
from adrec.data.schema import (
    Ad,
    Advertiser,
    Campaign,
    CampaignStatus,
    Device,
    Event,
    EventBatch,
    EventType,
    Gender,
    Objective,
    PricingModel,
    Targeting,
    User,
)
from adrec.exceptions import (
    AdrecError,
    ConfigError,
    ImportFormatError,
    NotFoundError,
    RowError,
    StoreError,
    UnknownBackendError,
    ValidationError,
)
from adrec.store import IngestResult, MarketStats, Store, open_store

__version__ = "0.1.0"

__all__ = [
    "Ad",
    "AdrecError",
    "Advertiser",
    "Campaign",
    "CampaignStatus",
    "ConfigError",
    "Device",
    "Event",
    "EventBatch",
    "EventType",
    "Gender",
    "ImportFormatError",
    "IngestResult",
    "MarketStats",
    "NotFoundError",
    "Objective",
    "PricingModel",
    "RowError",
    "Settings",
    "Store",
    "StoreError",
    "Targeting",
    "UnknownBackendError",
    "User",
    "ValidationError",
    "__version__",
    "open_store",
]
