"""Taobao display-ad click data (Alimama "Ad Display/Click Data on Taobao.com", Tianchi 56), raw release.

The folder holds the three tables of the release (CSV with header):

- ``user_profile.csv`` (``userid,cms_segid,cms_group_id,final_gender_code,age_level,pvalue_level,
  shopping_level,occupation,new_user_class_level``) → :class:`~adrec.data.schema.User` ``taobao:<userid>``:
  gender from ``final_gender_code`` (1 male, 2 female), ``age_band = "taobao:<age_level>"``, ``city_tier``
  from ``new_user_class_level``, and every profile column in ``attrs``. ``pvalue_level`` and
  ``new_user_class_level`` may be empty (or 0): missing, left out of ``attrs``.
- ``ad_feature.csv`` (``adgroup_id,cate_id,campaign_id,customer,brand,price``) → advertiser
  ``taobao:<customer>``, campaign ``taobao:<campaign_id>`` (CPC; the release has no bids, so bid 1.0 stands
  in) and ad ``taobao:<adgroup_id>`` with ``category = cate_id``, ``brand`` (``NULL`` = none) and ``price``.
- ``raw_sample.csv`` (``user,time_stamp,adgroup_id,pid,nonclk,clk``) → one IMPRESSION per row with
  ``placement = pid`` and ``ts = time_stamp``, plus a CLICK when ``clk`` is 1 (``nonclk`` must be
  ``1 - clk``). Event ids are ``taobao:imp:<user>:<adgroup>:<time_stamp>:<pid>`` / ``taobao:clk:...``: an
  exact repeat of a row is stored once (and reported as a duplicate).

Profiles are imported before ads and ads before the sample; events do not require their user to have a
profile (the release profiles only part of the sampled users).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from adrec.data.importers.base import (
    Chunk,
    Importer,
    Plan,
    TextFile,
    parse_flag,
    parse_float,
    parse_id,
    parse_int,
    require_dir,
    require_file,
)
from adrec.data.schema import Ad, Advertiser, Campaign, EventType, Gender, PricingModel, User
from adrec.exceptions import ValidationError

__all__ = ["IMPORTER", "PROFILE_COLUMNS", "add_ad", "profile_user"]

SOURCE = "taobao"
PROFILE_COLUMNS = (
    "cms_segid",
    "cms_group_id",
    "final_gender_code",
    "age_level",
    "pvalue_level",
    "shopping_level",
    "occupation",
    "new_user_class_level",
)
"""The user-profile columns, in release order (after ``userid``)."""

_MAY_BE_MISSING = frozenset({"pvalue_level", "new_user_class_level"})
_GENDERS = {1: Gender.MALE, 2: Gender.FEMALE}
_EXPECTS = (
    "the folder of the raw Taobao display-ad release, holding raw_sample.csv, ad_feature.csv and user_profile.csv"
)


def profile_user(user_id: str, values: Sequence[str]) -> User:
    """The user of a Taobao profile given the :data:`PROFILE_COLUMNS` values (raw text, in that order).

    Empty or 0 ``pvalue_level`` / ``new_user_class_level`` mean missing (the raw release leaves them empty,
    the DMR pre-processing writes 0).
    """
    attrs: dict[str, str] = {}
    for name, text in zip(PROFILE_COLUMNS, values, strict=True):
        stripped = text.strip()
        if name in _MAY_BE_MISSING and stripped in ("", "0"):
            continue
        attrs[name] = str(parse_int(stripped, name, lo=0))
    gender = _GENDERS.get(int(attrs["final_gender_code"]))
    if gender is None:
        raise ValidationError("final_gender_code", f"expected 1 (male) or 2 (female), got {values[2]!r}")
    tier = attrs.get("new_user_class_level")
    return User(
        user_id=user_id,
        gender=gender,
        age_band=f"taobao:{attrs['age_level']}",
        city_tier=int(tier) if tier is not None else None,
        attrs=attrs,
    )


def add_ad(out: Chunk, namespace: str, fields: Sequence[str]) -> str:
    """Parse ``adgroup_id, cate_id, campaign_id, customer, brand, price`` into the chunk; return the ad id.

    Each advertiser, campaign and ad is added the first time it is seen (later rows are still validated).
    """
    adgroup = parse_int(fields[0], "adgroup_id", lo=0)
    cate = parse_int(fields[1], "cate_id", lo=0)
    campaign = parse_int(fields[2], "campaign_id", lo=0)
    customer = parse_int(fields[3], "customer", lo=0)
    brand_text = fields[4].strip()
    brand = None if brand_text in ("", "NULL") else str(parse_int(brand_text, "brand", lo=0))
    price = parse_float(fields[5], "price", lo=0.0)
    advertiser_id, campaign_id = f"{namespace}:{customer}", f"{namespace}:{campaign}"
    if out.first(f"advertiser:{advertiser_id}"):
        out.advertisers.append(Advertiser(advertiser_id=advertiser_id, name=f"Taobao customer {customer}"))
    if out.first(f"campaign:{campaign_id}"):
        out.campaigns.append(
            Campaign(
                campaign_id=campaign_id,
                advertiser_id=advertiser_id,
                name=f"Taobao campaign {campaign}",
                pricing_model=PricingModel.CPC,
                bid=1.0,
            )
        )
    ad_id = f"{namespace}:{adgroup}"
    if out.first(f"ad:{ad_id}"):
        out.ads.append(Ad(ad_id=ad_id, campaign_id=campaign_id, category=str(cate), brand=brand, price=price))
    return ad_id


def _profile(fields: list[str], _line: int, out: Chunk) -> None:
    user = parse_int(fields[0], "userid", lo=0)
    out.users.append(profile_user(f"{SOURCE}:{user}", fields[1:]))


def _ad(fields: list[str], _line: int, out: Chunk) -> None:
    add_ad(out, SOURCE, fields)


def _sample(fields: list[str], _line: int, out: Chunk) -> None:
    user = parse_int(fields[0], "user", lo=0)
    ts = parse_int(fields[1], "time_stamp", lo=0)
    adgroup = parse_int(fields[2], "adgroup_id", lo=0)
    pid = parse_id(fields[3], "pid")
    nonclk = parse_flag(fields[4], "nonclk")
    clk = parse_flag(fields[5], "clk")
    if nonclk == clk:
        raise ValidationError("clk", f"clk={int(clk)} and nonclk={int(nonclk)}; exactly one of them must be 1")
    user_id, ad_id, key = f"{SOURCE}:{user}", f"{SOURCE}:{adgroup}", f"{user}:{adgroup}:{ts}:{pid}"
    out.event(f"{SOURCE}:imp:{key}", EventType.IMPRESSION, user_id, ad_id, ts, placement=pid)
    if clk:
        out.event(f"{SOURCE}:clk:{key}", EventType.CLICK, user_id, ad_id, ts, placement=pid)


def plan(path: Path) -> Plan:
    """user_profile.csv, then ad_feature.csv, then raw_sample.csv of the folder ``path``."""
    folder = require_dir(path, _EXPECTS)
    return Plan(
        files=[
            TextFile(
                require_file(folder, "user_profile.csv", _EXPECTS),
                _profile,
                header=("userid", *PROFILE_COLUMNS),
            ),
            TextFile(
                require_file(folder, "ad_feature.csv", _EXPECTS),
                _ad,
                header=("adgroup_id", "cate_id", "campaign_id", "customer", "brand", "price"),
            ),
            TextFile(
                require_file(folder, "raw_sample.csv", _EXPECTS),
                _sample,
                header=("user", "time_stamp", "adgroup_id", "pid", "nonclk", "clk"),
            ),
        ]
    )


IMPORTER = Importer(
    name="taobao",
    description="Taobao display-ad release (raw_sample, ad_feature, user_profile CSVs): users, ads, events",
    expects=_EXPECTS,
    plan=plan,
)
