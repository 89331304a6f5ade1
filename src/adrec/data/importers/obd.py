"""Open Bandit Dataset (ZOZOTOWN; Saito et al., NeurIPS 2021 Datasets & Benchmarks), in the folder layout
of the Open Bandit Pipeline: ``<policy>/<campaign>/<campaign>.csv`` next to ``item_context.csv``.

``path`` may be the dataset root (holding policy folders), one policy folder (``random``) or one campaign
folder (``random/men``); every campaign folder found is imported, item context first.

Mapping:

- ``item_context.csv`` (``,item_id,item_feature_0..3``) → :class:`~adrec.data.schema.Ad`
  ``obd:<campaign>:<item_id>`` owned by campaign ``obd:<campaign>`` of advertiser ``obd`` (ZOZOTOWN; CPC,
  bid 1.0). ``category`` is the hashed categorical ``item_feature_1``; ``body`` holds all four features as
  ``name=value`` pairs joined by ``;``. The publishers hash item features separately per file, so importing a
  second policy's logs overwrites them.
- users: the log has no user id, so a user is the tuple of the 4 hashed user features:
  ``obd:<first 16 hex digits of sha256("f0|f1|f2|f3")>``, with the features in ``attrs``.
- every log row (``,timestamp,item_id,position,click,propensity_score,user_feature_0..3,
  user-item_affinity_*``) → one IMPRESSION with ``placement`` = the slot position (``"1"``-``"3"``) and
  ``propensity`` = the logging policy's probability, plus one CLICK (same placement and propensity) when
  ``click`` is 1. Event ids are ``obd:<policy>:<campaign>:<row index>:imp`` / ``...:clk``, so the logging
  policy is recoverable from the id. The affinity columns are counted but not imported (they are derived
  from past clicks).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from adrec.data.importers.base import (
    Chunk,
    Importer,
    Plan,
    RowHandler,
    TextFile,
    parse_datetime,
    parse_flag,
    parse_float,
    parse_id,
    parse_int,
)
from adrec.data.schema import Ad, Advertiser, Campaign, EventType, PricingModel, User
from adrec.exceptions import ImportFormatError

__all__ = ["IMPORTER", "ObdRows", "read_logs", "user_key"]

SOURCE = "obd"
_EXPECTS = (
    "an Open Bandit Dataset folder laid out as <policy>/<campaign>/<campaign>.csv with item_context.csv "
    "beside each log (the dataset root, a policy folder or a campaign folder)"
)
_ITEM_HEADER = ("", "item_id", "item_feature_0", "item_feature_1", "item_feature_2", "item_feature_3")
_LOG_HEADER = (
    "",
    "timestamp",
    "item_id",
    "position",
    "click",
    "propensity_score",
    "user_feature_0",
    "user_feature_1",
    "user_feature_2",
    "user_feature_3",
)
_USER_FEATURES = _LOG_HEADER[6:10]


def user_key(features: list[str]) -> str:
    """The stand-in user id of a tuple of the 4 hashed user features."""
    digest = hashlib.sha256("|".join(features).encode()).hexdigest()[:16]
    return f"{SOURCE}:{digest}"


def _items(campaign: str) -> RowHandler:
    campaign_id = f"{SOURCE}:{campaign}"

    def handle(fields: list[str], _line: int, out: Chunk) -> None:
        item = parse_int(fields[1], "item_id", lo=0)
        parse_float(fields[2], "item_feature_0")
        features = [parse_id(fields[k], _ITEM_HEADER[k]) for k in (3, 4, 5)]
        body = ";".join(f"{name}={value}" for name, value in zip(_ITEM_HEADER[2:], fields[2:], strict=True))
        out.ads.append(
            Ad(
                ad_id=f"{campaign_id}:{item}",
                campaign_id=campaign_id,
                title=f"ZOZOTOWN {campaign} item {item}",
                body=body,
                category=features[0],
            )
        )

    return handle


def _log(policy: str, campaign: str) -> RowHandler:
    prefix = f"{SOURCE}:{policy}:{campaign}"

    def handle(fields: list[str], _line: int, out: Chunk) -> None:
        index = parse_int(fields[0], "index", lo=0)
        ts = parse_datetime(fields[1], "timestamp")
        item = parse_int(fields[2], "item_id", lo=0)
        position = parse_int(fields[3], "position", lo=1)
        click = parse_flag(fields[4], "click")
        propensity = parse_float(fields[5], "propensity_score", lo=0.0, hi=1.0, lo_open=True)
        features = [parse_id(fields[k], _LOG_HEADER[k]) for k in range(6, 10)]
        user_id = user_key(features)
        if out.first(f"user:{user_id}"):
            out.users.append(User(user_id=user_id, attrs=dict(zip(_USER_FEATURES, features, strict=True))))
        ad_id = f"{SOURCE}:{campaign}:{item}"
        placement = str(position)
        out.event(
            f"{prefix}:{index}:imp",
            EventType.IMPRESSION,
            user_id,
            ad_id,
            ts,
            placement=placement,
            propensity=propensity,
        )
        if click:
            out.event(
                f"{prefix}:{index}:clk",
                EventType.CLICK,
                user_id,
                ad_id,
                ts,
                placement=placement,
                propensity=propensity,
            )

    return handle


def _campaign_dirs(path: Path) -> list[Path]:
    if not path.is_dir():
        raise ImportFormatError(f"{path} is not a folder; expected {_EXPECTS}")
    for depth in ("", "*/", "*/*/"):
        found = sorted(p.parent for p in path.glob(f"{depth}item_context.csv"))
        if found:
            return found
    raise ImportFormatError(f"{path} holds no item_context.csv up to two folders down; expected {_EXPECTS}")


def plan(path: Path) -> Plan:
    """For every campaign folder under ``path``: its item_context.csv, then its log."""
    campaigns: dict[str, Campaign] = {}
    files: list[TextFile] = []
    for folder in _campaign_dirs(path):
        campaign, policy = folder.name, folder.resolve().parent.name
        log = folder / f"{campaign}.csv"
        if not log.is_file():
            raise ImportFormatError(
                f"{log} is missing; expected the log of campaign {campaign!r} next to its item_context.csv"
            )
        campaign_id = f"{SOURCE}:{campaign}"
        campaigns[campaign_id] = Campaign(
            campaign_id=campaign_id,
            advertiser_id=SOURCE,
            name=f"ZOZOTOWN {campaign}",
            pricing_model=PricingModel.CPC,
            bid=1.0,
        )
        files.append(TextFile(folder / "item_context.csv", _items(campaign), header=_ITEM_HEADER))
        files.append(TextFile(log, _log(policy, campaign), header=_LOG_HEADER))
    return Plan(
        advertisers=[Advertiser(advertiser_id=SOURCE, name="ZOZOTOWN (Open Bandit Dataset)")],
        campaigns=list(campaigns.values()),
        files=files,
    )


IMPORTER = Importer(
    name="obd",
    description="Open Bandit Dataset folder: logged impressions/clicks with position and propensity",
    expects=_EXPECTS,
    plan=plan,
)


# -- reading a log into memory (off-policy evaluation, click models) ---------------------------------------------
@dataclass(frozen=True)
class ObdRows:
    """Open Bandit logs read through the importer (:func:`~adrec.data.importers.base.read_into_memory`), one entry
    per logged impression in file order: its logging policy (the folder it came from), time, user, ad, slot
    (1-based), click (0/1) and the logging policy's propensity; with each user's four hashed features and each
    ad's record (its item features in ``body``)."""

    policy: npt.NDArray[np.object_]
    ts: npt.NDArray[np.float64]
    user_id: npt.NDArray[np.object_]
    ad_id: npt.NDArray[np.object_]
    position: npt.NDArray[np.int64]
    click: npt.NDArray[np.float64]
    propensity: npt.NDArray[np.float64]
    users: dict[str, dict[str, str]]
    ads: dict[str, Ad]

    def item_features(self, ad_id: str) -> dict[str, str]:
        """The ``item_feature_*`` values of an ad, as its ``item_context.csv`` row gave them."""
        body = self.ads[ad_id].body or ""
        return dict(pair.split("=", 1) for pair in body.split(";") if "=" in pair)


def read_logs(path: str | Path) -> ObdRows:
    """Every campaign log under ``path`` (the dataset root, a policy folder or a campaign folder), as
    ``adrec import obd`` would import it, but into memory (see :class:`ObdRows`)."""
    from adrec.data.importers.base import read_into_memory

    log = read_into_memory(IMPORTER, Path(path))
    return ObdRows(
        policy=np.array([str(e).split(":")[1] for e in log.event_id.tolist()], dtype=object),
        ts=log.ts,
        user_id=log.user_id,
        ad_id=log.ad_id,
        position=np.array([int(p) for p in log.placement.tolist()], dtype=np.int64),
        click=log.click,
        propensity=log.propensity,
        users={u: {k: str(v) for k, v in user.attrs.items()} for u, user in log.users.items()},
        ads=log.ads,
    )
