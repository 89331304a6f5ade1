"""User profiles: declared attributes plus behaviour derived from events, updated incrementally, and segments.

See :mod:`adrec.profiles.profile` for the decay and affinity definitions, :mod:`adrec.profiles.builder` for how
profiles are built and the privacy rules, :mod:`adrec.profiles.segments` for rule-defined audiences and
:mod:`adrec.profiles.lookalike` for audiences expanded from seed users.
"""

from adrec.profiles.builder import ProfileBuilder, ProfileUpdate
from adrec.profiles.lookalike import LOOKALIKE_METHODS, LookalikeResult, UserVectors, lookalike
from adrec.profiles.profile import DIMENSIONS, PRICE_BAND_EDGES, Behaviour, InterestStats, Profile, price_band
from adrec.profiles.segments import Segment, parse_interest, resolve

__all__ = [
    "DIMENSIONS",
    "LOOKALIKE_METHODS",
    "PRICE_BAND_EDGES",
    "Behaviour",
    "InterestStats",
    "LookalikeResult",
    "Profile",
    "ProfileBuilder",
    "ProfileUpdate",
    "Segment",
    "UserVectors",
    "lookalike",
    "parse_interest",
    "price_band",
    "resolve",
]
