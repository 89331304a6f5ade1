"""MovieLens 100K (``ml-100k`` folder of the original GroupLens release).

Mapping (ids are namespaced ``ml-100k:<id>`` so datasets can share a store):

- ``u.user`` (``user_id|age|gender|occupation|zip_code``) → :class:`~adrec.data.schema.User` with ``age``,
  ``gender`` (M/F) and ``attrs = {"occupation": ..., "zip_code": ...}``.
- ``u.item`` (Latin-1; ``movie_id|title|release_date|video_release_date|IMDb_URL|`` + 19 genre flags) →
  :class:`~adrec.data.schema.Ad` with the movie title as ``title``, the first flagged genre (in ``u.genre``
  order) as ``category`` and *all* flagged genres pipe-joined as ``body`` (``Ad`` has no free attributes).
  The IMDb URL becomes ``landing_url``, with spaces percent-encoded (one URL of the release contains a space).
- One advertiser and one campaign, both ``ml-100k`` (CPC, bid 1.0), own every movie.
- ``u.data`` (``user_id<TAB>item_id<TAB>rating<TAB>timestamp``) → events, by the click rule: every rating is
  one IMPRESSION (id ``ml-100k:imp:<user>:<item>``) with the rating in ``value``; a rating of
  :data:`CLICK_MIN_RATING` (4) or more is also one CLICK (id ``ml-100k:clk:<user>:<item>``, no value). Both
  carry the rating's timestamp. The ids are deterministic, so a re-import adds no events.
"""

from __future__ import annotations

from pathlib import Path

from adrec.data.importers.base import (
    Chunk,
    Importer,
    Plan,
    TextFile,
    dataset_market,
    parse_flag,
    parse_int,
    parse_text,
    require_dir,
    require_file,
)
from adrec.data.schema import Ad, EventType, Gender, User
from adrec.exceptions import ValidationError

__all__ = ["CLICK_MIN_RATING", "GENRES", "IMPORTER", "SOURCE"]

SOURCE = "ml-100k"
CLICK_MIN_RATING = 4
"""Ratings at or above this also count as a click."""

GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
"""The 19 genre flags of ``u.item``, in the order of ``u.genre``."""

_EXPECTS = "the ml-100k folder of the MovieLens 100K release, holding u.user, u.item and u.data"
_GENDERS = {"M": Gender.MALE, "F": Gender.FEMALE}


def _user(fields: list[str], _line: int, out: Chunk) -> None:
    user = parse_int(fields[0], "user_id", lo=1)
    age = parse_int(fields[1], "age", lo=0, hi=120)
    gender = _GENDERS.get(fields[2])
    if gender is None:
        raise ValidationError("gender", f"expected M or F, got {fields[2]!r}")
    attrs = {"occupation": parse_text(fields[3], "occupation"), "zip_code": parse_text(fields[4], "zip_code")}
    out.users.append(User(user_id=f"{SOURCE}:{user}", age=age, gender=gender, attrs=attrs))


def _movie(fields: list[str], _line: int, out: Chunk) -> None:
    movie = parse_int(fields[0], "movie_id", lo=1)
    title = parse_text(fields[1], "title")
    genres = [g for g, flag in zip(GENRES, fields[5:], strict=True) if parse_flag(flag, f"genre[{g}]")]
    url = fields[4].strip().replace(" ", "%20") or None
    out.ads.append(
        Ad(
            ad_id=f"{SOURCE}:{movie}",
            campaign_id=SOURCE,
            title=title,
            body="|".join(genres),
            category=genres[0] if genres else None,
            landing_url=url,
        )
    )


def _rating(fields: list[str], _line: int, out: Chunk) -> None:
    user = parse_int(fields[0], "user_id", lo=1)
    item = parse_int(fields[1], "item_id", lo=1)
    rating = parse_int(fields[2], "rating", lo=1, hi=5)
    ts = parse_int(fields[3], "timestamp", lo=0)
    user_id, ad_id = f"{SOURCE}:{user}", f"{SOURCE}:{item}"
    out.event(f"{SOURCE}:imp:{user}:{item}", EventType.IMPRESSION, user_id, ad_id, ts, value=rating)
    if rating >= CLICK_MIN_RATING:
        out.event(f"{SOURCE}:clk:{user}:{item}", EventType.CLICK, user_id, ad_id, ts)


def plan(path: Path) -> Plan:
    """u.user, then u.item, then u.data of the ml-100k folder ``path``."""
    folder = require_dir(path, _EXPECTS)
    advertiser, campaign = dataset_market(SOURCE, "MovieLens 100K")
    return Plan(
        advertisers=[advertiser],
        campaigns=[campaign],
        files=[
            TextFile(require_file(folder, "u.user", _EXPECTS), _user, delimiter="|", n_fields=5),
            TextFile(
                require_file(folder, "u.item", _EXPECTS),
                _movie,
                delimiter="|",
                encoding="latin-1",
                n_fields=5 + len(GENRES),
            ),
            TextFile(require_file(folder, "u.data", _EXPECTS), _rating, delimiter="\t", n_fields=4),
        ],
    )


IMPORTER = Importer(
    name="movielens",
    description="MovieLens 100K folder: user demographics, movies as ads, ratings as impressions and clicks",
    expects=_EXPECTS,
    plan=plan,
)
