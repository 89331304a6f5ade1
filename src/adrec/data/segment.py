"""The audience segment record: rules over declared attributes and derived interests.

Defined below the store, which resolves segments to users in one query, and re-exported by
:mod:`adrec.profiles.segments` with :func:`~adrec.profiles.segments.resolve`; that module's docstring explains how
interests are read (``interest_match``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from adrec.data.profile import DIMENSIONS
from adrec.data.schema import Audience, Targeting

__all__ = ["DEFAULT_MIN_AFFINITY", "Segment", "parse_interest"]

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
    of those (how a user's interests are read: ``interest_match``, see :mod:`adrec.profiles.segments`). Users with
    an unknown age are outside a segment that restricts age.
    """

    name: str | None = Field(default=None, max_length=200)
    min_affinity: float = Field(default=DEFAULT_MIN_AFFINITY, gt=0, le=1)
    interest_match: Literal["affinity", "targeting"] = "affinity"

    @classmethod
    def from_targeting(cls, targeting: Targeting, *, name: str | None = None) -> Segment:
        """The users ``targeting`` serves (see :func:`adrec.data.targeting.matches`).

        Hours and days of week are request context, not audience, and are left out; devices and regions are the
        users' declared ones. So the segment holds exactly the users the targeting admits in a request at a time
        its hours and days admit, that does not override the device or region.
        """
        audience = {f: getattr(targeting, f) for f in Audience.model_fields}
        return cls(name=name, interest_match="targeting", **audience)

    @property
    def behavioural(self) -> bool:
        """True when the segment has interest conditions (which only users who consent can meet, except an
        ``interests_exclude`` under ``interest_match="targeting"``)."""
        return bool(self.interests_include or self.interests_exclude)

    def include_keys(self) -> list[tuple[str, str]]:
        """``(dimension, value)`` of every included interest, sorted."""
        return sorted(parse_interest(t) for t in self.interests_include)

    def exclude_keys(self) -> list[tuple[str, str]]:
        """``(dimension, value)`` of every excluded interest, sorted."""
        return sorted(parse_interest(t) for t in self.interests_exclude)
