"""Audience segments: rules over declared attributes and derived interests that resolve to sets of users.

A :class:`Segment` shares the audience fields of :class:`~adrec.data.schema.Targeting` (age, genders, regions,
city tiers, devices, included and excluded interests; both derive from :class:`~adrec.data.schema.Audience`) and
reads interests in one of two ways (``interest_match``):

``"affinity"`` (the default)
    A user has an interest when its affinity share (see :mod:`adrec.profiles.profile`) is at least
    ``min_affinity``. Interests are tags: ``cosmetics`` (a category), ``brand:Acme`` or ``price:50-100`` (a price
    band, see :func:`~adrec.profiles.profile.price_band`). Interest conditions are behavioural targeting: a segment
    with any of them never includes a user who does not consent to it, whatever their stored profile holds.
``"targeting"``
    A user's interests are those ad targeting matches (:func:`adrec.data.targeting.targeting_interests`: declared
    interests and the top behavioural categories, none without consent), tags matched literally, as the server
    does: a user without consent meets no ``interests_include`` and is never removed by ``interests_exclude``.
    :meth:`Segment.from_targeting` builds such segments; ``min_affinity`` plays no part.

Declared-attribute conditions apply to every user.

:func:`resolve` is answered by the store in one query (SQL over the users and profile-interest tables).
"""

from __future__ import annotations

from adrec.data.segment import DEFAULT_MIN_AFFINITY, Segment, parse_interest
from adrec.store.base import Store

__all__ = ["DEFAULT_MIN_AFFINITY", "Segment", "parse_interest", "resolve"]


def resolve(store: Store, segment: Segment) -> list[str]:
    """The ids of the users in ``segment``, sorted.

    Examples
    --------
    >>> seg = Segment(genders={"female"}, age_min=25, age_max=34, city_tiers={1}, interests_include={"cosmetics"})
    >>> user_ids = resolve(store, seg)  # doctest: +SKIP
    """
    return store.resolve_segment(segment)
