"""The user profile record, defined in :mod:`adrec.data.profile` (below the store, which keeps profiles) and
re-exported here, where the profile builder derives it. The decay and affinity definitions are documented there.
"""

from adrec.data.profile import DIMENSIONS, HOURS, PRICE_BAND_EDGES, Behaviour, InterestStats, Profile, price_band

__all__ = [
    "DIMENSIONS",
    "HOURS",
    "PRICE_BAND_EDGES",
    "Behaviour",
    "InterestStats",
    "Profile",
    "price_band",
]
