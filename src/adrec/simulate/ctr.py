"""Click datasets from a simulated market, with every example's true click probability.

The market's logged history (:func:`~adrec.simulate.history.simulate_history`) is cut in time: the impressions
after the cut are the examples, each encoded through the same :class:`~adrec.models.ctr.FeatureSpec` as serving
with the users' behaviour profiles a daily profile job would have had at the start of its day, built from the
events before then (:meth:`~adrec.profiles.ProfileBuilder.snapshots`, as ``store:`` datasets do; no feature sees
the click it predicts). The examples are then split by time into train, validation and test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np

from adrec.data.profile import price_band
from adrec.data.schema import EventBatch
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
from adrec.simulate.config import SimulationConfig
from adrec.simulate.history import simulate_history
from adrec.simulate.market import Market
from adrec.simulate.records import ad_records, campaign_records, user_records

__all__ = ["simulated_click_dataset", "simulation_from_spec"]


def simulated_click_dataset(
    market: Market,
    spec: FeatureSpec | None = None,
    *,
    profile_share: float = 0.3,
    valid_share: float = 0.1,
    test_share: float = 0.2,
    target: Literal["click", "conversion"] = "click",
    campaign_prior_clicks: float = 50.0,
    profile_every_s: float | None = 86_400.0,
    progress: bool = False,
) -> ClickDataset:
    """Examples of the market's history after the first ``profile_share`` of its time span, each encoded with the
    profiles of a profile job run every ``profile_every_s`` seconds from the cut (None: once, at the cut), as
    ``store:`` datasets are, split by time: the last ``test_share`` of the examples' span is the test set, the
    ``valid_share`` before it the validation set.

    ``target="conversion"``: the clicked impressions only, labelled by whether the click converted (a pCVR
    dataset; truth ``Market.true_cvr``), with the baseline ``campaign rate``: each campaign's conversions per
    click over the train and validation clicks, shrunk towards the overall rate with the weight of
    ``campaign_prior_clicks`` clicks (as serving estimates it without a conversion model).
    """
    if target not in ("click", "conversion"):
        raise ValueError(f"target must be click or conversion; got {target!r}")
    check_shares(profile_share, valid_share, test_share)
    spec = spec or FeatureSpec()
    cfg = market.config
    cut = cfg.start_ts + profile_share * (cfg.end_ts - cfg.start_ts)
    boundaries = profile_boundaries(cut, cfg.end_ts, profile_every_s)
    ads = list(ad_records(market))
    meta = {ad.ad_id: (ad.category, ad.brand, price_band(ad.price)) for ad in ads}
    keys = ("user", "ad", "ts", "position", "clicked", "p_click", "converted", "p_conversion")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}

    def history(advance: Callable[[int], None]) -> Iterator[EventBatch]:
        """The history's events up to the last profile run, collecting the examples after the cut on the way."""
        for log in simulate_history(market):
            if log.ts[0] < boundaries[-1]:
                yield log.to_event_batch(market)
            later = log.ts >= cut
            for key, values in (
                ("user", log.user_idx),
                ("ad", log.ad_idx),
                ("ts", log.ts),
                ("position", log.position),
                ("clicked", log.clicked),
                ("p_click", log.p_click),
                ("converted", log.converted),
                ("p_conversion", log.p_conversion),
            ):
                parts[key].append(values[later])
            advance(len(log))

    with Bars(enabled=progress) as bars:
        logs = history(bars.task("history", cfg.n_impressions))
        snapshots = list(ProfileBuilder().snapshots(logs, boundaries, lambda ids: {a: meta[a] for a in ids.tolist()}))
        for _ in logs:  # the rest of the history: examples after the last profile run
            pass
    col = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
    if target == "conversion":
        clicked = col["clicked"].astype(bool)
        col = {k: v[clicked] for k, v in col.items()}
    label, truth = ("clicked", "p_click") if target == "click" else ("converted", "p_conversion")
    records = {u.user_id: u for u in user_records(market)}
    examples = encode_by_period(
        spec,
        boundaries,
        snapshots,
        col["ts"],
        market.user_ids(col["user"].astype(np.int64)),
        lambda ids: {u: records[u] for u in ids},
        spec.ads(ads, {c.campaign_id: c for c in campaign_records(market)}),
        col["ad"].astype(np.int64),
        spec.context(col["ts"], cfg.placement),
        col["position"].astype(np.int64),
        col[label].astype(np.float32),
    )
    train, valid, test = time_split(col["ts"], valid_share, test_share)
    ad_idx = col["ad"][test].astype(np.int64)
    baselines = {}
    if target == "conversion":
        campaign = market.ad_campaign[col["ad"].astype(np.int64)]
        rate = campaign_rate(campaign, col[label], np.r_[train, valid], market.n_campaigns, campaign_prior_clicks)
        baselines["campaign rate"] = rate[campaign[test]]
    what = "clicks" if target == "conversion" else "impressions"
    return ClickDataset(
        name=f"sim(seed={cfg.seed}, users={cfg.n_users:,}, ads={cfg.n_ads:,}, impressions={cfg.n_impressions:,}; "
        f"{target}s of {what})",
        spec=spec,
        train=examples.take(train),
        valid=examples.take(valid),
        test=examples.take(test),
        test_users=market.user_ids(col["user"][test].astype(np.int64)),
        test_fields={
            "advertiser": market.advertiser_ids()[market.ad_advertiser[ad_idx]],
            "category": np.asarray(market.category_names, dtype=object)[market.ad_category[ad_idx]],
        },
        test_truth=col[truth][test].astype(np.float64),
        test_rows={
            "user_idx": col["user"][test].astype(np.int64),
            "ad_idx": ad_idx,
            "position": col["position"][test].astype(np.int64),
        },
        test_truth_top=market.true_ctr(col["user"][test].astype(np.int64), ad_idx, REFERENCE_POSITION)
        if target == "click"
        else None,
        baselines=baselines,
    )


_ALIASES = {
    "users": "n_users",
    "ads": "n_ads",
    "impressions": "n_impressions",
    "campaigns": "n_campaigns",
    "advertisers": "n_advertisers",
}


def simulation_from_spec(spec: str, *, seed: int | None = None) -> SimulationConfig:
    """The market of a ``sim:`` dataset spec: ``sim:`` alone is the default market, ``sim:KEY=VALUE,...`` sets
    fields of :class:`~adrec.simulate.config.SimulationConfig` (``users``, ``ads``, ``campaigns``,
    ``advertisers`` and ``impressions`` stand for ``n_users`` and so on), e.g. ``sim:users=20000,seed=3``.
    ``seed`` is the seed when the spec names none (as ``adrec simulate`` takes the ``seed`` setting)."""
    kind, _, rest = spec.partition(":")
    if kind != "sim":
        raise ValidationError("--dataset", f"{spec!r} is not a sim: dataset")
    fields: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValidationError("--dataset", f"{pair!r} in {spec!r} is not KEY=VALUE")
        name = _ALIASES.get(key.strip(), key.strip())
        if name in fields:
            raise ValidationError("--dataset", f"{key.strip()!r} is set twice in {spec!r}")
        fields[name] = value.strip()
    unknown = set(fields) - set(SimulationConfig.model_fields)
    if unknown:
        known = sorted({*_ALIASES, *(f for f in SimulationConfig.model_fields if not f.startswith("n_"))})
        raise ValidationError(
            "--dataset", f"unknown simulation setting {sorted(unknown)} in {spec!r}; settings: {', '.join(known)}"
        )
    if seed is not None:
        fields.setdefault("seed", str(seed))
    return SimulationConfig(**fields)
