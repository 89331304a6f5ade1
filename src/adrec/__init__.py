"""adrec: personalized ad recommendation in one system.

The public API; everything else is reachable through its sub-packages but may change between releases.
"""

from adrec.catalog import (
    CachedEncoder,
    ContentIndex,
    SentenceTransformerEncoder,
    TextEncoder,
    TfidfEncoder,
    deduplicate,
    make_encoder,
)
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
    NotFittedError,
    NotFoundError,
    RowError,
    StoreError,
    TokenError,
    UnknownBackendError,
    ValidationError,
)
from adrec.profiles import Profile, ProfileBuilder, Segment, UserVectors, lookalike
from adrec.store import IngestResult, MarketStats, Store, open_store

__version__ = "0.1.0"

__all__ = [
    "Ad",
    "AdrecError",
    "Advertiser",
    "CachedEncoder",
    "Campaign",
    "CampaignStatus",
    "ConfigError",
    "ContentIndex",
    "Device",
    "Event",
    "EventBatch",
    "EventType",
    "Gender",
    "ImportFormatError",
    "IngestResult",
    "MarketStats",
    "NotFittedError",
    "NotFoundError",
    "Objective",
    "PricingModel",
    "Profile",
    "ProfileBuilder",
    "RowError",
    "Segment",
    "SentenceTransformerEncoder",
    "Settings",
    "Store",
    "StoreError",
    "Targeting",
    "TextEncoder",
    "TfidfEncoder",
    "TokenError",
    "UnknownBackendError",
    "User",
    "UserVectors",
    "ValidationError",
    "__version__",
    "deduplicate",
    "lookalike",
    "make_encoder",
    "open_store",
]
