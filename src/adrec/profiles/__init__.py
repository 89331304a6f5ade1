"""User profiles: declared attributes plus behaviour derived from events, updated incrementally, and segments.

See :mod:`adrec.profiles.profile` for the decay and affinity definitions, :mod:`adrec.profiles.builder` for how
profiles are built and the privacy rules, and :mod:`adrec.profiles.segments` for audiences.
"""

from adrec.profiles.builder import ProfileBuilder, ProfileUpdate
from adrec.profiles.profile import DIMENSIONS, PRICE_BAND_EDGES, Behaviour, InterestStats, Profile, price_band
from adrec.profiles.segments import Segment, parse_interest, resolve

__all__ = [
    "DIMENSIONS",
    "PRICE_BAND_EDGES",
    "Behaviour",
    "InterestStats",
    "Profile",
    "ProfileBuilder",
    "ProfileUpdate",
    "Segment",
    "parse_interest",
    "price_band",
    "resolve",
]
