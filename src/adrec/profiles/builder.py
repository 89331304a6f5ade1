"""Building user profiles from events: incrementally as events arrive, or from scratch.

:meth:`ProfileBuilder.update` reads only what the new events touch (their users' stored profiles and their ads),
aggregates the events with vectorized NumPy, moves the stored decayed values to the new reference time and adds
the new contributions (see :mod:`adrec.profiles.profile` for the decay). :meth:`ProfileBuilder.rebuild` streams
every stored event through the same aggregation, so both paths agree up to floating-point rounding.

Embeddings: given a model's user embeddings (``embeddings``, user id → vector; ``adrec build-profiles --models``
reads the live model's), each profile written gets its user's vector, or none when the model does not know the
user (vectors of two models never mix). Without them, stored embeddings are kept.

Privacy: only users with a stored :class:`~adrec.data.schema.User` record that consents to behavioural targeting
get behaviour (and keep an embedding). Events of anonymous users (no record) and of non-consenting users are
ignored, and an update that meets a non-consenting user clears whatever behaviour was stored for them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from adrec.data.schema import EventBatch, EventType
from adrec.exceptions import ValidationError
from adrec.profiles.profile import DIMENSIONS, HOURS, Behaviour, InterestStats, Profile, price_band
from adrec.store.base import Store

__all__ = ["Embeddings", "ProfileBuilder", "ProfileUpdate"]

SECONDS_PER_DAY = 86_400.0

AdMeta = tuple[str | None, str | None, str | None]
"""An ad's ``(category, brand, price band)``, in :data:`DIMENSIONS` order."""


Embeddings = Mapping[str, Sequence[float]]
"""User id → embedding (e.g. a fitted model's user embeddings by user id)."""


def _embedding(profile: Profile, embeddings: Embeddings | None) -> tuple[float, ...] | None:
    """What a written profile's embedding becomes: the stored one without ``embeddings``, else the user's vector
    in them (None when they do not know the user)."""
    if embeddings is None:
        return profile.embedding
    vector = embeddings.get(profile.user_id)
    return None if vector is None else tuple(float(x) for x in vector)


def _member(values: npt.NDArray[np.object_], allowed: Collection[str]) -> npt.NDArray[np.bool_]:
    # np.isin on object arrays compares element by element (quadratic); a hash lookup is linear.
    return np.fromiter((v in allowed for v in values.tolist()), dtype=bool, count=len(values))


@dataclass(frozen=True)
class ProfileUpdate:
    """What one update or rebuild did."""

    events: int
    """Events read."""
    used: int
    """Events that went into behaviour (of known, consenting users)."""
    profiles: int
    """Profiles written."""
    skipped_unknown_users: int
    """Events of users without a stored record (anonymous: no consent on file)."""
    skipped_no_consent: int
    """Events of users who do not consent to behavioural targeting."""


def _fold_before(batches: list[EventBatch], boundary: float, fold: Callable[[EventBatch], None]) -> list[EventBatch]:
    """Fold the events before ``boundary``; return the rest."""
    rest = []
    for batch in batches:
        before = batch.ts < boundary
        fold(batch.take(np.flatnonzero(before)))
        if not before.all():
            rest.append(batch.take(np.flatnonzero(~before)))
    return rest


class ProfileBuilder:
    """Derives :class:`~adrec.profiles.profile.Behaviour` from events.

    Parameters
    ----------
    half_life_days
        Half-life of the exponential time decay, in days (default 14).
    impression_weight, click_weight, conversion_weight
        Weight of one event of each type in affinities and active hours (defaults 0.1, 1, 3): a click says ten
        times more about an interest than being shown the ad, a conversion three times more than a click.
    ctr_prior, ctr_strength
        The smoothed CTR is ``(clicks + ctr_prior * ctr_strength) / (impressions + ctr_strength)``: the prior
        counts as ``ctr_strength`` impressions at ``ctr_prior`` (defaults 2 %, 100).

    Examples
    --------
    >>> builder = ProfileBuilder(half_life_days=7)
    >>> builder.update(store, new_events)  # doctest: +SKIP
    >>> builder.rebuild(store)  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        half_life_days: float = 14.0,
        impression_weight: float = 0.1,
        click_weight: float = 1.0,
        conversion_weight: float = 3.0,
        ctr_prior: float = 0.02,
        ctr_strength: float = 100.0,
    ) -> None:
        self.half_life_days = half_life_days
        self.impression_weight = impression_weight
        self.click_weight = click_weight
        self.conversion_weight = conversion_weight
        self.ctr_prior = ctr_prior
        self.ctr_strength = ctr_strength

    def __repr__(self) -> str:
        return (
            f"ProfileBuilder(half_life_days={self.half_life_days}, impression_weight={self.impression_weight}, "
            f"click_weight={self.click_weight}, conversion_weight={self.conversion_weight}, "
            f"ctr_prior={self.ctr_prior}, ctr_strength={self.ctr_strength})"
        )

    # -- parameters ------------------------------------------------------------------------------------------
    def _check(self) -> None:
        def positive(name: str, value: float) -> None:
            if not (math.isfinite(value) and value > 0):
                raise ValidationError(f"profile_builder.{name}", f"must be a finite number > 0 (got {value!r})")

        positive("half_life_days", self.half_life_days)
        positive("ctr_strength", self.ctr_strength)
        for name in ("impression_weight", "click_weight", "conversion_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValidationError(f"profile_builder.{name}", f"must be a finite number >= 0 (got {value!r})")
        if not 0 <= self.ctr_prior <= 1:
            raise ValidationError("profile_builder.ctr_prior", f"must be in [0, 1] (got {self.ctr_prior!r})")

    @property
    def half_life(self) -> float:
        """The half-life in seconds."""
        return self.half_life_days * SECONDS_PER_DAY

    def _weights(self) -> npt.NDArray[np.float64]:
        w = np.zeros(len(EventType))
        w[EventType.IMPRESSION] = self.impression_weight
        w[EventType.CLICK] = self.click_weight
        w[EventType.CONVERSION] = self.conversion_weight
        return w

    def _ctr(self, impressions: int, clicks: int) -> float:
        return (clicks + self.ctr_prior * self.ctr_strength) / (impressions + self.ctr_strength)

    # -- the two entry points --------------------------------------------------------------------------------
    def update(self, store: Store, events: EventBatch, *, embeddings: Embeddings | None = None) -> ProfileUpdate:
        """Fold ``events`` into the stored profiles of their users; work grows with ``len(events)`` only.

        Pass each event once (e.g. the batch just appended): the profile cannot tell a resent event from a new one.
        ``embeddings`` (user id → vector) replaces the embedding of each profile written (see the module docs).
        """
        self._check()
        events.validate()
        user_ids = sorted(set(events.user_id.tolist()))
        stored = store.get_profiles(user_ids)
        mask = _member(events.user_id, {u for u, p in stored.items() if p.user.consent})
        known = _member(events.user_id, set(stored))
        used = events.take(np.flatnonzero(mask))
        meta = self._ad_meta(store, used.ad_id)
        fresh = self.aggregate(used, meta)
        out: list[Profile] = []
        for user_id, profile in stored.items():
            if not profile.user.consent:
                if profile.behaviour is not None or profile.embedding is not None:
                    out.append(Profile(profile.user))  # consent withdrawn: purge derived data
                continue
            new = fresh.get(user_id)
            if new is None:
                continue
            merged = new if profile.behaviour is None else self.merge(profile.behaviour, new)
            out.append(Profile(profile.user, merged, _embedding(profile, embeddings)))
        store.upsert_profiles(out)
        return ProfileUpdate(
            events=len(events),
            used=int(mask.sum()),
            profiles=len(out),
            skipped_unknown_users=int((~known).sum()),
            skipped_no_consent=int((known & ~mask).sum()),
        )

    def update_window(self, store: Store, since: float, until: float | None = None) -> ProfileUpdate:
        """:meth:`update` with the stored events of ``since <= ts < until``, read in batches.

        Suits a periodic job whose windows tile time; events that arrive late for an already processed window are
        missed (use :meth:`update` with the appended batch, or :meth:`rebuild`, when that happens).
        """
        totals = [0, 0, 0, 0, 0]
        for batch in store.iter_events(since=since, until=until):
            r = self.update(store, batch)
            for i, v in enumerate((r.events, r.used, r.profiles, r.skipped_unknown_users, r.skipped_no_consent)):
                totals[i] += v
        return ProfileUpdate(*totals)

    def rebuild(
        self, store: Store, user_ids: Sequence[str] | None = None, *, embeddings: Embeddings | None = None
    ) -> ProfileUpdate:
        """Recompute the profiles of ``user_ids`` (default: every user) from all their stored events.

        Embeddings of consenting users are kept, or, with ``embeddings`` (user id → vector, e.g. the live model's
        user embeddings), set from it; everything else derived is replaced.
        """
        self._check()
        if user_ids is None:
            profiles = {p.user_id: p for batch in store.iter_profiles() for p in batch}
            batches: Iterable[EventBatch] = store.iter_events()
        else:
            profiles = store.get_profiles(list(dict.fromkeys(user_ids)))
            batches = (b for u in profiles for b in store.iter_events(user_id=u))
        consenting = {u for u, p in profiles.items() if p.user.consent}
        behaviour: dict[str, Behaviour] = {}
        n_events = used = unknown = no_consent = 0
        meta: dict[str, AdMeta] = {}
        for batch in batches:
            n_events += len(batch)
            known = _member(batch.user_id, profiles.keys())
            ok = _member(batch.user_id, consenting)
            unknown += int((~known).sum())
            no_consent += int((known & ~ok).sum())
            used += int(ok.sum())
            kept = batch.take(np.flatnonzero(ok))
            meta.update(self._ad_meta(store, kept.ad_id, known=meta))
            for user_id, b in self.aggregate(kept, meta).items():
                behaviour[user_id] = self.merge(behaviour[user_id], b) if user_id in behaviour else b
        out = [
            Profile(p.user, behaviour.get(u), _embedding(p, embeddings)) if p.user.consent else Profile(p.user)
            for u, p in profiles.items()
        ]
        store.upsert_profiles(out)
        return ProfileUpdate(n_events, used, len(out), unknown, no_consent)

    def snapshots(
        self,
        batches: Iterable[EventBatch],
        boundaries: Sequence[float],
        ad_meta: Callable[[npt.NDArray[np.object_]], Mapping[str, AdMeta]],
    ) -> Iterator[dict[str, Behaviour]]:
        """Each user's behaviour from the events of ``batches`` before each of ``boundaries`` (ascending), in one
        pass: the profiles a profile job run at each boundary would have had (consent is the reader's to apply).

        ``batches`` need not be sorted within or across batches, as long as no event before a boundary comes after
        a batch whose events all lie at or after it (a simulated history's chunks: each chunk's clicks come after
        its impressions, the next chunk's impressions after this chunk's). ``ad_meta`` gives the metadata of the
        ads of a batch. Each snapshot is a dict of its own (sharing the unchanged behaviours)."""
        behaviours: dict[str, Behaviour] = {}
        meta: dict[str, AdMeta] = {}
        pending: list[EventBatch] = []  # events at or after the current boundary

        def fold(batch: EventBatch) -> None:
            if len(batch) == 0:
                return
            meta.update(ad_meta(np.array([a for a in set(batch.ad_id.tolist()) if a not in meta], dtype=object)))
            for user_id, b in self.aggregate(batch, meta).items():
                behaviours[user_id] = b if user_id not in behaviours else self.merge(behaviours[user_id], b)

        remaining = list(boundaries)
        for batch in batches:
            while remaining and len(batch) and float(batch.ts.min()) >= remaining[0]:
                yield dict(behaviours)  # nothing before this boundary can come any more
                remaining.pop(0)
                pending = _fold_before(pending, remaining[0] if remaining else math.inf, fold)
            if not remaining:
                return
            pending = _fold_before([*pending, batch], remaining[0], fold)
        while remaining:
            yield dict(behaviours)
            remaining.pop(0)
            pending = _fold_before(pending, remaining[0] if remaining else math.inf, fold)

    # -- the arithmetic --------------------------------------------------------------------------------------
    def _ad_meta(
        self, store: Store, ad_ids: npt.NDArray[np.object_], known: Mapping[str, AdMeta] | None = None
    ) -> dict[str, AdMeta]:
        """``(category, brand, price band)`` of the ads in ``ad_ids`` not already in ``known``."""
        known = known or {}
        wanted = [a for a in set(ad_ids.tolist()) if a not in known]
        return {ad.ad_id: (ad.category, ad.brand, price_band(ad.price)) for ad in store.get_ads(wanted)}

    def aggregate(self, events: EventBatch, ad_meta: Mapping[str, AdMeta]) -> dict[str, Behaviour]:
        """Behaviour of each user in ``events`` alone, decayed to that user's latest event time (vectorized).

        Ads missing from ``ad_meta`` (or with no category, brand or price) count in the statistics and active
        hours but not in the affinities of the missing dimensions.
        """
        self._check()
        if len(events) == 0:
            return {}
        users, inv = np.unique(events.user_id, return_inverse=True)
        n = len(users)
        ts = events.ts
        kind = events.type.astype(np.int64)
        ref = np.full(n, -np.inf)
        np.maximum.at(ref, inv, ts)
        first = np.full(n, np.inf)
        np.minimum.at(first, inv, ts)
        decay = np.exp2(-(ref[inv] - ts) / self.half_life)
        weighted = self._weights()[kind] * decay
        n_types = len(EventType)
        counts = np.bincount(inv * n_types + kind, minlength=n * n_types).reshape(n, n_types)
        decayed = np.bincount(inv * n_types + kind, weights=decay, minlength=n * n_types).reshape(n, n_types)
        hour = (np.floor(ts / 3600.0) % HOURS).astype(np.int64)
        hours = np.bincount(inv * HOURS + hour, weights=weighted, minlength=n * HOURS).reshape(n, HOURS)

        interests: list[dict[str, dict[str, InterestStats]]] = [{} for _ in range(n)]
        ads, ad_inv = np.unique(events.ad_id, return_inverse=True)
        for d, dimension in enumerate(DIMENSIONS):
            values = [ad_meta[a][d] if a in ad_meta else None for a in ads.tolist()]
            vocab = sorted({v for v in values if v is not None})
            if not vocab:
                continue
            code_of = {v: i for i, v in enumerate(vocab)}
            ad_code = np.array([-1 if v is None else code_of[v] for v in values], dtype=np.int64)
            code = ad_code[ad_inv]
            has = code >= 0
            key = inv[has] * len(vocab) + code[has]
            keys, k_inv = np.unique(key, return_inverse=True)
            m = len(keys)
            score = np.bincount(k_inv, weights=weighted[has], minlength=m)
            k_counts = np.bincount(k_inv * n_types + kind[has], minlength=m * n_types).reshape(m, n_types)
            last = np.full(m, -np.inf)
            np.maximum.at(last, k_inv, ts[has])
            for j, (u, c) in enumerate(zip((keys // len(vocab)).tolist(), (keys % len(vocab)).tolist(), strict=True)):
                row = k_counts[j]
                interests[u].setdefault(dimension, {})[vocab[c]] = InterestStats(
                    float(score[j]),
                    int(row[EventType.IMPRESSION]),
                    int(row[EventType.CLICK]),
                    int(row[EventType.CONVERSION]),
                    float(last[j]),
                )

        out: dict[str, Behaviour] = {}
        for i, user_id in enumerate(users.tolist()):
            c = counts[i]
            imps, clicks, convs = int(c[EventType.IMPRESSION]), int(c[EventType.CLICK]), int(c[EventType.CONVERSION])
            dec = decayed[i]
            out[user_id] = Behaviour(
                ref_ts=float(ref[i]),
                first_ts=float(first[i]),
                last_ts=float(ref[i]),
                impressions=imps,
                clicks=clicks,
                conversions=convs,
                decayed=(
                    float(dec[EventType.IMPRESSION]),
                    float(dec[EventType.CLICK]),
                    float(dec[EventType.CONVERSION]),
                ),
                ctr=self._ctr(imps, clicks),
                hours=tuple(hours[i].tolist()),
                interests=interests[i],
            )
        return out

    def merge(self, a: Behaviour, b: Behaviour) -> Behaviour:
        """The behaviour of the events of ``a`` and ``b`` together, at the later of their reference times."""
        ref = max(a.ref_ts, b.ref_ts)
        fa = 2.0 ** (-(ref - a.ref_ts) / self.half_life)
        fb = 2.0 ** (-(ref - b.ref_ts) / self.half_life)
        interests: dict[str, dict[str, InterestStats]] = {}
        for dimension in DIMENSIONS:
            sa, sb = a.interests.get(dimension, {}), b.interests.get(dimension, {})
            if not sa and not sb:
                continue
            merged: dict[str, InterestStats] = {}
            for value in sa.keys() | sb.keys():
                x, y = sa.get(value), sb.get(value)
                if x is not None and y is not None:
                    merged[value] = InterestStats(
                        x.score * fa + y.score * fb,
                        x.impressions + y.impressions,
                        x.clicks + y.clicks,
                        x.conversions + y.conversions,
                        max(x.last_ts, y.last_ts),
                    )
                elif x is not None:
                    merged[value] = x._replace(score=x.score * fa)
                elif y is not None:
                    merged[value] = y._replace(score=y.score * fb)
            interests[dimension] = dict(sorted(merged.items()))
        imps, clicks = a.impressions + b.impressions, a.clicks + b.clicks
        return Behaviour(
            ref_ts=ref,
            first_ts=min(a.first_ts, b.first_ts),
            last_ts=max(a.last_ts, b.last_ts),
            impressions=imps,
            clicks=clicks,
            conversions=a.conversions + b.conversions,
            decayed=(
                a.decayed[0] * fa + b.decayed[0] * fb,
                a.decayed[1] * fa + b.decayed[1] * fb,
                a.decayed[2] * fa + b.decayed[2] * fb,
            ),
            ctr=self._ctr(imps, clicks),
            hours=tuple(x * fa + y * fb for x, y in zip(a.hours, b.hours, strict=True)),
            interests=interests,
        )
