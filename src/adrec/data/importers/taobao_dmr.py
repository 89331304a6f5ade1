"""Taobao display-ad data pre-joined by DMR (Lyu et al., AAAI 2020): ``alimama_sampled*.txt``, 267 columns.

Each comma-separated line (no header) joins one impression with its user profile, its ad and the user's
last 50 behaviour events. ``path`` is such a file or a folder of them (``*.txt``).

Mapping (namespace ``taobao-dmr``, kept apart from the raw ``taobao`` import because the price here is
normalised and the pre-processing may have changed the ids):

- columns 250-258 (``userid`` + the 8 profile columns) → a :class:`~adrec.data.schema.User`, built as in
  the raw import (:func:`adrec.data.importers.taobao.profile_user`), once per user.
- columns 259-264 (``adgroup_id, cate_id, campaign_id, customer, brand, price``) → advertiser, campaign and
  ad as in the raw import; ``Ad.price`` is the min-max normalised price, about [0, 1] (the raw price is lost).
- columns 265-266 (``pid`` 0/1, ``clk``) → one IMPRESSION with ``placement = pid`` (``"0"``/``"1"``) plus
  a CLICK when ``clk`` is 1.
- there are no timestamps: ``ts`` = :data:`BASE_TS` (2017-05-06 00:00 UTC, the first day of the release) plus
  the line number in seconds, which keeps file order but is not the real time. Event ids are
  ``taobao-dmr:<file stem>:<line>:imp`` / ``...:clk``.
- columns 0-249 (behaviour history and masks) are not imported: only their count is checked. Interests derived
  from behaviour belong to the profile builder.
"""

from __future__ import annotations

from pathlib import Path

from adrec.data.importers.base import (
    Chunk,
    Importer,
    Plan,
    RowHandler,
    TextFile,
    input_files,
    parse_flag,
    parse_int,
)
from adrec.data.importers.taobao import add_ad, profile_user
from adrec.data.schema import EventType

__all__ = ["BASE_TS", "IMPORTER", "N_COLUMNS"]

SOURCE = "taobao-dmr"
N_COLUMNS = 267
BASE_TS = 1_494_028_800.0
"""2017-05-06T00:00:00Z; event times are this plus the line number in seconds."""

_USER, _AD, _PID, _CLK = 250, 259, 265, 266
_EXPECTS = "a DMR-format alimama_sampled*.txt file (267 comma-separated columns, no header) or a folder of them"


def _row(stem: str) -> RowHandler:
    prefix = f"{SOURCE}:{stem}"

    def handle(fields: list[str], line: int, out: Chunk) -> None:
        user = parse_int(fields[_USER], "userid", lo=0)
        user_id = f"{SOURCE}:{user}"
        profile = profile_user(user_id, fields[_USER + 1 : _AD])
        ad_id = add_ad(out, SOURCE, fields[_AD:_PID])
        placement = "1" if parse_flag(fields[_PID], "pid") else "0"
        click = parse_flag(fields[_CLK], "clk")
        if out.first(f"user:{user_id}"):
            out.users.append(profile)
        ts = BASE_TS + line
        out.event(f"{prefix}:{line}:imp", EventType.IMPRESSION, user_id, ad_id, ts, placement=placement)
        if click:
            out.event(f"{prefix}:{line}:clk", EventType.CLICK, user_id, ad_id, ts, placement=placement)

    return handle


def plan(path: Path) -> Plan:
    """Every DMR file at ``path``, in name order."""
    return Plan(
        files=[TextFile(file, _row(file.stem), n_fields=N_COLUMNS) for file in input_files(path, ["*.txt"], _EXPECTS)]
    )


IMPORTER = Importer(
    name="taobao-dmr",
    description="Taobao ad clicks pre-joined by DMR (267 columns): profiles, ads and impressions in one file",
    expects=_EXPECTS,
    plan=plan,
)
