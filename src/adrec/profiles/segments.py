"""Audience segments: rules over declared attributes and derived interests that resolve to sets of users.

A :class:`Segment` shares the audience fields of :class:`~adrec.data.schema.Targeting` (age, genders, regions,
city tiers, devices, included and excluded interests; both derive from :class:`~adrec.data.schema.Audience`) and
adds ``min_affinity``: a user has an interest when its affinity share (see :mod:`adrec.profiles.profile`) is at
least that. Interests are tags: ``cosmetics`` (a category), ``brand:Acme`` or ``price:50-100`` (a price band,
see :func:`~adrec.profiles.profile.price_band`).

Interest conditions are behavioural targeting: a segment with any of them never includes a user who does not
consent to it, whatever their stored profile holds. Declared-attribute conditions apply to every user.

:func:`resolve` is answered by the store in one query (SQL over the users and profile-interest tables).
"""

from __future__ import annotations

from pydantic import Field

from adrec.data.schema import Audience, Targeting
from adrec.profiles.profile import DIMENSIONS
from adrec.store.base import Store

__all__ = ["Segment", "parse_interest", "resolve"]

DEFAULT_MIN_AFFINITY = 0.2


def parse_interest(tag: str) -> tuple[str, str]:
    """``"cosmetics"`` → ``("category", "cosmetics")``; ``"brand:Acme"`` → ``("brand", "Acme")``.

    A prefix that is not a dimension name is part of a category (``"home:garden"`` is a category).
    """
    dimension, sep, value = tag.partition(":")
    if sep and dimension in DIMENSIONS and value:
        return dimension, value
    return "category", tag


class Segment(Audience):
    """A rule-defined audience. An empty field means "no restriction on this dimension".

    ``interests_include`` matches users with *any* of the interests; ``interests_exclude`` removes users with any
    of those. Users with an unknown age are outside a segment that restricts age.
    """

    name: str | None = Field(default=None, max_length=200)
    min_affinity: float = Field(default=DEFAULT_MIN_AFFINITY, gt=0, le=1)

    @classmethod
    def from_targeting(
        cls, targeting: Targeting, *, min_affinity: float = DEFAULT_MIN_AFFINITY, name: str | None = None
    ) -> Segment:
        """The audience of a campaign's targeting. Its hours and days of week are request context, not
        audience, and are left out."""
        audience = {f: getattr(targeting, f) for f in Audience.model_fields}
        return cls(name=name, min_affinity=min_affinity, **audience)

    @property
    def behavioural(self) -> bool:
        """True when the segment has interest conditions (and so needs consent)."""
        return bool(self.interests_include or self.interests_exclude)

    def include_keys(self) -> list[tuple[str, str]]:
        """``(dimension, value)`` of every included interest, sorted."""
        return sorted(parse_interest(t) for t in self.interests_include)

    def exclude_keys(self) -> list[tuple[str, str]]:
        """``(dimension, value)`` of every excluded interest, sorted."""
        return sorted(parse_interest(t) for t in self.interests_exclude)


def resolve(store: Store, segment: Segment) -> list[str]:
    """The ids of the users in ``segment``, sorted.

    Examples
    --------
    >>> seg = Segment(genders={"female"}, age_min=25, age_max=34, city_tiers={1}, interests_include={"cosmetics"})
    >>> user_ids = resolve(store, seg)  # doctest: +SKIP
    """
    return store.resolve_segment(segment)
