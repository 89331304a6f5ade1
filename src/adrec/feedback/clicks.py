"""Click datasets from the store: the ads adrec served (or simulated through its ledger), labelled by their clicks.

Each served ad the ledger recorded an impression of (:meth:`~adrec.store.base.Ledger.iter_served`) is one example:
the user, the ad, the request's time and placement, the slot it was shown in, and whether it was clicked (or, for
conversions, whether its click converted). Like a ``sim:`` dataset, the served span is cut in time: the store's
events before the cut build the users' behaviour profiles (:class:`~adrec.profiles.ProfileBuilder`, as the profile
job would have had them at the cut), the ads served after it are the examples, encoded with those profiles through
the same :class:`~adrec.models.ctr.FeatureSpec` as serving (no feature sees the click it predicts), then split by
time into train, validation and test.

A slot the token did not carry (tokens signed before positions were recorded) counts as the top slot. Imported logs
that were never served (``append_events``) have no ledger rows: they reach the profiles, not the examples.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from adrec.data.profile import price_band
from adrec.data.schema import User
from adrec.exceptions import ValidationError
from adrec.models.ctr.dataset import (
    ClickDataset,
    campaign_rate,
    check_shares,
    encode_by_period,
    profile_boundaries,
    time_split,
)
from adrec.models.ctr.features import REFERENCE_POSITION, FeatureSpec
from adrec.profiles.builder import ProfileBuilder
from adrec.progress import Bars
from adrec.store.base import ServedBatch, Store

__all__ = ["served_click_dataset"]


def _served(store: Store, since: float | None, until: float | None) -> ServedBatch:
    parts = list(store.iter_served(since=since, until=until))
    names = ServedBatch.__dataclass_fields__
    if not parts:
        floats = ("served_ts", "click_ts", "conversion_ts", "price", "cost")
        empty = {"position": np.int16, **dict.fromkeys(floats, np.float64)}
        return ServedBatch(**{n: np.zeros(0, dtype=empty.get(n, object)) for n in names})
    return ServedBatch(**{n: np.concatenate([getattr(p, n) for p in parts]) for n in names})


def served_click_dataset(
    store: Store,
    spec: FeatureSpec | None = None,
    *,
    since: float | None = None,
    until: float | None = None,
    profile_share: float = 0.3,
    valid_share: float = 0.1,
    test_share: float = 0.2,
    target: Literal["click", "conversion"] = "click",
    campaign_prior_clicks: float = 50.0,
    profile_every_s: float | None = 86_400.0,
    builder: ProfileBuilder | None = None,
    name: str = "store",
    progress: bool = False,
) -> ClickDataset:
    """Examples of the ads served with ``since <= served_ts < until`` after the first ``profile_share`` of their
    time span, each encoded with the profiles of a profile job run every ``profile_every_s`` seconds from the cut
    (None: once, at the cut), as serving reads them between runs; split by time (the last ``test_share`` of the
    examples' span is the test set, the ``valid_share`` before it the validation set; ``test_share=0``: no test
    set, for training only).

    ``target="conversion"``: the clicked ads only, labelled by whether the click converted, with the baseline
    ``campaign rate`` (each campaign's conversions per click over the train and validation clicks, shrunk towards
    the overall rate with the weight of ``campaign_prior_clicks`` clicks). A clear :class:`ValidationError` when
    the store holds no served ads to learn from.
    """
    if target not in ("click", "conversion"):
        raise ValueError(f"target must be click or conversion; got {target!r}")
    check_shares(profile_share, valid_share, test_share)
    spec = spec or FeatureSpec()
    with Bars(enabled=progress) as bars:
        with bars.step("served ads"):
            served = _served(store, since, until)
        if len(served) == 0:
            raise ValidationError(
                "--dataset", f"{name} holds no served ads to learn from (impressions recorded through the ledger)"
            )
        lo, hi = float(served.served_ts[0]), float(served.served_ts[-1])
        cut = lo + profile_share * (hi - lo)
        boundaries = profile_boundaries(cut, hi, profile_every_s)
        later = served.served_ts >= cut
        clicked = ~np.isnan(served.click_ts)
        rows = np.flatnonzero(later & clicked if target == "conversion" else later)
        label = (~np.isnan(served.conversion_ts) if target == "conversion" else clicked)[rows].astype(np.float32)
        if len(rows) == 0 or label.min() == label.max():
            what = "clicks" if target == "conversion" else "impressions"
            raise ValidationError(
                "--dataset",
                f"{name}: the {len(rows):,} {what} served after the first {profile_share:.0%} of its time span are "
                f"all {'positive' if len(rows) and label[0] else 'negative'}: nothing to learn from",
            )
        ad_ids, ad_rows = np.unique(served.ad_id[rows], return_inverse=True)
        ads = {ad.ad_id: ad for ad in store.get_ads(ad_ids.tolist())}
        missing = [a for a in ad_ids.tolist() if a not in ads]
        if missing:
            raise ValidationError(
                "--dataset", f"{name}: served ads missing from the ad library (deleted?): {', '.join(missing[:5])}"
            )
        campaign_ids = sorted({ad.campaign_id for ad in ads.values()})
        campaigns = {c.campaign_id: c for c in (store.get_campaign(cid) for cid in campaign_ids)}
        ts = served.served_ts[rows]
        position = served.position[rows].astype(np.int64)
        position[position < 1] = REFERENCE_POSITION
        user_of = served.user_id[rows]

        def ad_meta(ad_ids: npt.NDArray[np.object_]) -> dict[str, tuple[str | None, str | None, str | None]]:
            return {ad.ad_id: (ad.category, ad.brand, price_band(ad.price)) for ad in store.get_ads(ad_ids.tolist())}

        def users(ids: list[str]) -> dict[str, User]:
            return {u: p.user for u, p in store.get_profiles(ids).items()}

        with bars.step("examples, profile period by period"):
            snapshots = (builder or ProfileBuilder()).snapshots(
                store.iter_events(until=boundaries[-1]), boundaries, ad_meta
            )
            examples = encode_by_period(
                spec,
                boundaries,
                snapshots,
                ts,
                user_of,
                users,
                spec.ads([ads[a] for a in ad_ids.tolist()], campaigns),
                ad_rows,
                spec.context(ts, served.placement[rows].tolist()),
                position,
                label,
            )
    train, valid, test = time_split(ts, valid_share, test_share)
    campaign_of: npt.NDArray[np.object_] = served.campaign_id[rows]
    baselines = {}
    if target == "conversion":
        names, campaign = np.unique(campaign_of, return_inverse=True)
        rate = campaign_rate(campaign, label, np.r_[train, valid], len(names), campaign_prior_clicks)
        baselines["campaign rate"] = rate[campaign[test]]
    advertiser = np.array([campaigns[c].advertiser_id for c in campaign_of[test].tolist()], dtype=object)
    category = np.array([ads[a].category for a in served.ad_id[rows][test].tolist()], dtype=object)
    what = "clicks" if target == "conversion" else "served ads"
    return ClickDataset.from_split(
        f"{name} ({len(rows):,} {what} after the profile cut; {target}s)",
        spec,
        examples,
        (train, valid, test),
        user_of[test],
        test_fields={"advertiser": advertiser, "category": category},
        baselines=baselines,
    )
