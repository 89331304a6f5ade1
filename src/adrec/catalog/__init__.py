"""The ad library's content side: embeddings of creative text, similar-ads search and de-duplication.

See :mod:`adrec.catalog.text` for the encoders and their cache, and :mod:`adrec.catalog.similar` for search.
Mapping content into a recommender's item space (cold-start ads) lives in :mod:`adrec.models.coldstart`.
"""

from adrec.catalog.similar import ContentIndex, SimilarAd, deduplicate, near_duplicate_groups
from adrec.catalog.text import (
    CachedEncoder,
    EmbeddingCache,
    SentenceTransformerEncoder,
    TextEncoder,
    TfidfEncoder,
    ad_text,
    make_encoder,
    normalize_rows,
    packaged_model_path,
    text_hash,
)

__all__ = [
    "CachedEncoder",
    "ContentIndex",
    "EmbeddingCache",
    "SentenceTransformerEncoder",
    "SimilarAd",
    "TextEncoder",
    "TfidfEncoder",
    "ad_text",
    "deduplicate",
    "make_encoder",
    "near_duplicate_groups",
    "normalize_rows",
    "packaged_model_path",
    "text_hash",
]
