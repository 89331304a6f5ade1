"""Click datasets from outside CTR logs (Criteo, Avazu), for benchmarking the click models on public data.

These logs have no adrec users or ads, only anonymous columns, so they get a spec of their own
(:class:`TabularSpec`: one hashed field per categorical column, the numeric columns as dense features) that the
same models (:class:`~adrec.models.ctr.ClickModel`) train on; such a model cannot rank adrec's ads (serving
refuses it). The rows are read by the importers (:mod:`adrec.data.importers`), so a bad row gets the same error,
naming its file, line and column, as ``adrec import``.

``criteo:PATH`` (the Kaggle 2014 Display Advertising Challenge file, TSV or DeepCTR's CSV):

- fields ``C1``..``C26`` (the hashed categories; a missing one is the value ``?``), and ``I1``..``I13`` bucketed
  as categories (``floor(ln(x)²)`` above 2, the value itself up to 2: the winning solution's transform);
- dense ``I1``..``I13`` as ``sign(x)·ln(1 + |x|)`` (0 when missing);
- no time column: the rows are split in file order (the original file is in time order).

``avazu:PATH`` (the Kaggle 2014 mobile-ad file): a field per column but ``id`` and ``click``, with ``hour`` as
the hour of day and a ``weekday`` field from the date; split by the ``hour`` column's time (in file order when
every row has the same hour, as a sample of the file's first rows does).

No slot is logged in either: every example is at position 1.

``obd:PATH`` (the Open Bandit Dataset, ZOZOTOWN; every campaign log of one policy under ``PATH``, read by the
``obd`` importer; a path holding several policies' logs is refused): real clicks in a three-slot widget; the
random policy's logs show every item equally often in every slot, so their clicks say what the items are worth
free of a logging policy's choices. Fields: ``campaign``, ``item`` (the ad
id), ``item_feature_1``..``3``, ``user_feature_0``..``3``, ``hour`` and ``weekday`` (UTC); dense:
``item_feature_0`` (the publishers' numeric item feature); the logged slot is each example's position. Split by
time. Beside the models stand two baselines that know no features: the click rate of each slot, and of each
(item, slot) shrunk towards its slot's rate by a prior weight chosen on the validation examples (counted on
train and validation for the test). The ``user-item_affinity_*`` columns are not read (the importer does not
import them).

``taobao:PATH`` (Alimama's Taobao display-ad clicks): the raw release's folder (``raw_sample.csv``,
``ad_feature.csv``, ``user_profile.csv``; the ``taobao`` importer) or DMR's pre-joined ``alimama_sampled*.txt``
(a file or a folder of them; the ``taobao-dmr`` importer, whose rows have no time: file order). Fields: the
user's id and eight profile columns (``?`` for a user the release did not profile), ``ad`` (adgroup),
``campaign``, ``advertiser`` (customer), ``category``, ``brand``, ``pid`` (the placement), ``hour`` and
``weekday`` (UTC; missing for DMR, whose rows have no time: the importer numbers them, and they are split in the
order read, file by file); dense: ``log_price`` (``ln(1 + price)``; DMR's prices are already scaled to about
[0, 1]). Every example at position 1 (no slot is logged).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from adrec.data.records import CtrExample
from adrec.exceptions import ValidationError
from adrec.models.ctr.dataset import ClickDataset, check_shares, time_split
from adrec.models.ctr.features import Examples, HashedSpec

__all__ = ["LOGS", "TabularSpec", "ctr_log_dataset", "obd_click_dataset", "slot_popularity", "taobao_click_dataset"]


class TabularSpec(HashedSpec):
    """One hashed field per categorical column (one slot each) and the named dense columns of an outside log."""

    kind = "tabular"

    def __init__(self, fields: Sequence[tuple[str, int]], dense: Sequence[str], hash_bits: int = 18) -> None:
        super().__init__(hash_bits)
        self.field_slots = tuple((str(name), int(n)) for name, n in fields)
        self.dense_names = tuple(dense)
        if not self.field_slots:
            raise ValidationError("fields", "a tabular spec needs at least one categorical field")
        if any(n != 1 for _, n in self.field_slots):
            raise ValidationError("fields", "a tabular spec has one slot per field")
        if len(set(self.fields)) != len(self.fields):
            raise ValidationError("fields", f"a tabular spec names each field once (got {list(self.fields)})")

    def __repr__(self) -> str:
        return f"TabularSpec({len(self.field_slots)} fields, {len(self.dense_names)} dense, hash_bits={self.hash_bits})"

    def encode(
        self, values: Sequence[Mapping[str, object]], dense: npt.NDArray[np.float32], labels: Sequence[int]
    ) -> Examples:
        """Examples of rows given as ``field → value`` (a missing field or ``None`` is the value ``?``) with their
        dense features ``(n, len(dense_names))`` and labels, all at position 1."""
        n = len(values)
        ids = np.empty((n, len(self.field_slots)), dtype=np.int64)
        b = self.bucket
        for col, name in enumerate(self.fields):
            ids[:, col] = [b(name, row.get(name)) for row in values]
        label = np.asarray(labels, dtype=np.float32)
        return Examples(ids, dense.astype(np.float32).reshape(n, len(self.dense_names)), np.ones(n, np.int64), label)


# -- the logs ------------------------------------------------------------------------------------------------------
_CRITEO_INTEGERS = tuple(f"I{i}" for i in range(1, 14))
_CRITEO_CATEGORIES = tuple(f"C{i}" for i in range(1, 27))


def criteo_bucket(value: int | None) -> str | None:
    """The category of a Criteo count: ``floor(ln(x)²)`` above 2, the count itself up to 2, None when missing."""
    if value is None:
        return None
    return f"L{math.floor(math.log(value) ** 2)}" if value > 2 else str(value)


def _criteo(rows: Sequence[CtrExample]) -> tuple[TabularSpec, list[dict[str, object]], npt.NDArray[np.float32]]:
    spec = TabularSpec([(c, 1) for c in (*_CRITEO_INTEGERS, *_CRITEO_CATEGORIES)], _CRITEO_INTEGERS)
    values, dense = [], np.zeros((len(rows), len(_CRITEO_INTEGERS)), dtype=np.float32)
    for r, row in enumerate(rows):
        f = row.features
        row_values: dict[str, object] = {c: f.get(c) for c in _CRITEO_CATEGORIES}
        row_values.update({c: criteo_bucket(f.get(c)) for c in _CRITEO_INTEGERS})
        values.append(row_values)
        for j, c in enumerate(_CRITEO_INTEGERS):
            x = f.get(c)
            if x is not None:
                dense[r, j] = math.copysign(math.log1p(abs(x)), x)
    return spec, values, dense


def _avazu(rows: Sequence[CtrExample]) -> tuple[TabularSpec, list[dict[str, object]], npt.NDArray[np.float32]]:
    names = [n for n in rows[0].features if n != "hour"] if rows else []
    spec = TabularSpec([(n, 1) for n in (*names, "hour", "weekday")], ())
    values = []
    for row in rows:
        when = datetime.fromtimestamp(row.ts or 0.0, UTC)
        values.append({**{n: row.features.get(n) for n in names}, "hour": when.hour, "weekday": when.weekday()})
    return spec, values, np.zeros((len(rows), 0), dtype=np.float32)


_Encoded = tuple[TabularSpec, list[dict[str, object]], npt.NDArray[np.float32]]
LOGS: dict[str, Callable[[Sequence[CtrExample]], _Encoded]] = {"criteo": _criteo, "avazu": _avazu}
"""The outside logs a ``KIND:PATH`` dataset reads: importer name → how its rows become features."""


class _Rows:
    """The import sink that keeps the rows of a CTR log (these importers write nothing else)."""

    def __init__(self) -> None:
        self.rows: list[CtrExample] = []

    def append_ctr_examples(self, examples: Sequence[CtrExample]) -> int:
        self.rows.extend(examples)
        return len(examples)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"a CTR log import wrote {name}: not a CTR log")


def ctr_log_dataset(kind: str, path: str | Path, *, valid_share: float = 0.1, test_share: float = 0.2) -> ClickDataset:
    """The :class:`~adrec.models.ctr.ClickDataset` of the ``kind`` log at ``path`` (see the module docs): the last
    ``test_share`` of its time (of its rows without times) is the test set, the ``valid_share`` before it the
    validation set."""
    from adrec.data.importers import IMPORTERS
    from adrec.data.importers.base import execute

    if kind not in LOGS:
        raise ValidationError("--dataset", f"unknown CTR log {kind!r}; known: {', '.join(sorted(LOGS))}")
    check_shares(0.5, valid_share, test_share)  # no profile span here: any valid share stands in for it
    sink = _Rows()
    execute(IMPORTERS[kind], Path(path), sink, skip_bad=False, progress=False)
    rows = sink.rows
    if not rows:
        raise ValidationError("--dataset", f"{kind}:{path} holds no rows")
    spec, values, dense = LOGS[kind](rows)
    labels = [r.label for r in rows]
    if min(labels) == max(labels):
        raise ValidationError("--dataset", f"{kind}:{path}: all {len(rows):,} rows are labelled {labels[0]}")
    examples = spec.encode(values, dense, labels)
    ts = np.array([r.ts if r.ts is not None else math.nan for r in rows], dtype=np.float64)
    if np.isnan(ts).any() or ts.min() == ts.max():  # no times, or all in one hour (a sample's first rows)
        ts = np.arange(len(rows), dtype=np.float64)
    split = time_split(ts, valid_share, test_share)
    users: npt.NDArray[np.object_] = np.array([f"row{i}" for i in split[2].tolist()], dtype=object)  # no users here
    return ClickDataset.from_split(f"{kind}:{path} ({len(rows):,} rows)", spec, examples, split, users)


# -- the Open Bandit Dataset ---------------------------------------------------------------------------------------
_OBD_USER = ("user_feature_0", "user_feature_1", "user_feature_2", "user_feature_3")
_OBD_ITEM = ("item_feature_1", "item_feature_2", "item_feature_3")
_PRIORS = (1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0)
"""The prior weights (in impressions) :func:`slot_popularity` chooses from."""


def slot_popularity(
    item: npt.NDArray[np.object_],
    slot: npt.NDArray[np.int64],
    label: npt.NDArray[np.float32],
    fit: npt.NDArray[np.intp],
    score: npt.NDArray[np.intp],
    prior: float,
) -> npt.NDArray[np.float64]:
    """Popularity by position: the click rate of each (item, slot) over the rows ``fit``, shrunk towards its slot's
    rate with the weight of ``prior`` impressions (infinite: the slot's rate alone), for the rows ``score`` (an
    unseen pair gets its slot's rate, an unseen slot the overall rate)."""
    overall = (label[fit].sum() + 1.0) / (len(fit) + 2.0)
    slots: dict[int, list[float]] = {}
    pairs: dict[tuple[object, int], list[float]] = {}
    for i in fit.tolist():
        key = int(slot[i])
        for seen in (slots.setdefault(key, [0.0, 0.0]), pairs.setdefault((item[i], key), [0.0, 0.0])):
            seen[0] += 1.0
            seen[1] += float(label[i])
    slot_rate = {k: (c + overall) / (n + 1.0) for k, (n, c) in slots.items()}
    out = np.empty(len(score), dtype=np.float64)
    for j, i in enumerate(score.tolist()):
        base = slot_rate.get(int(slot[i]), overall)
        n, c = pairs.get((item[i], int(slot[i])), (0.0, 0.0))
        out[j] = base if math.isinf(prior) else (c + prior * base) / (n + prior)
    return out


def obd_click_dataset(path: str | Path, *, valid_share: float = 0.1, test_share: float = 0.2) -> ClickDataset:
    """The :class:`~adrec.models.ctr.ClickDataset` of the Open Bandit logs under ``path`` (see the module docs):
    the last ``test_share`` of their time is the test set, the ``valid_share`` before it the validation set."""
    from adrec.data.importers.obd import read_logs

    check_shares(0.5, valid_share, test_share)
    rows = read_logs(path)
    policies = sorted(set(rows.policy.tolist()))
    if len(policies) > 1:  # their ad ids are the same, and each policy's files hash the item features apart
        raise ValidationError(
            "--dataset", f"obd:{path} holds the logs of several policies ({', '.join(policies)}): name one's folder"
        )
    if rows.click.min() == rows.click.max():
        raise ValidationError(
            "--dataset", f"obd:{path}: all {len(rows.click):,} impressions are labelled {rows.click[0]:.0f}"
        )
    items = {ad: rows.item_features(ad) for ad in rows.ads}
    spec = TabularSpec(
        [(n, 1) for n in ("campaign", "item", *_OBD_ITEM, *_OBD_USER, "hour", "weekday")], ("item_feature_0",)
    )
    values: list[dict[str, object]] = []
    dense = np.zeros((len(rows.ts), 1), dtype=np.float32)
    for r, (ad, user, ts) in enumerate(zip(rows.ad_id.tolist(), rows.user_id.tolist(), rows.ts.tolist(), strict=True)):
        when = datetime.fromtimestamp(ts, UTC)
        item, person = items.get(ad, {}), rows.users.get(user, {})
        row: dict[str, object] = {"campaign": rows.ads[ad].campaign_id, "item": ad, "hour": when.hour}
        row["weekday"] = when.weekday()
        row.update({f: item.get(f) for f in _OBD_ITEM})
        row.update({f: person.get(f) for f in _OBD_USER})
        values.append(row)
        dense[r, 0] = float(item.get("item_feature_0", 0.0))
    examples = spec.encode(values, dense, rows.click.tolist())
    examples = dataclasses.replace(examples, position=rows.position.copy())
    train, valid, test = time_split(rows.ts, valid_share, test_share)
    label = examples.labels

    # Popularity by position: its prior weight is the one whose rates counted on train predict the validation
    # clicks best; the test gets the rates counted on train and validation.
    def loss(p: npt.NDArray[np.float64], y: npt.NDArray[np.float32]) -> float:
        q = np.clip(p, 1e-7, 1 - 1e-7)
        return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))

    item_ids, slot = rows.ad_id, rows.position
    prior = math.inf  # without validation examples, the slot's rate
    if len(valid):
        prior = min(_PRIORS, key=lambda m: loss(slot_popularity(item_ids, slot, label, train, valid, m), label[valid]))
    seen = np.concatenate([train, valid])
    by_slot = slot_popularity(item_ids, slot, label, seen, test, math.inf)
    return ClickDataset.from_split(
        f"obd:{path} ({len(rows.ts):,} impressions, {len(rows.ads)} items)",
        spec,
        examples,
        (train, valid, test),
        rows.user_id[test],
        baselines={
            "click rate by slot": by_slot,
            f"popularity by slot (prior {prior:,.0f})": slot_popularity(item_ids, slot, label, seen, test, prior),
        },
    )


# -- Taobao ----------------------------------------------------------------------------------------------------------
_TAOBAO_AD = ("ad", "campaign", "advertiser", "category", "brand", "pid", "hour", "weekday")


def taobao_click_dataset(path: str | Path, *, valid_share: float = 0.1, test_share: float = 0.2) -> ClickDataset:
    """The :class:`~adrec.models.ctr.ClickDataset` of a Taobao log at ``path`` (see the module docs): the last
    ``test_share`` of its time (of its rows, for DMR's timeless file) is the test set, the ``valid_share`` before
    it the validation set."""
    from adrec.data.importers import IMPORTERS
    from adrec.data.importers.base import read_into_memory
    from adrec.data.importers.taobao import PROFILE_COLUMNS

    check_shares(0.5, valid_share, test_share)
    folder = Path(path)
    kind = "taobao" if (folder / "raw_sample.csv").is_file() else "taobao-dmr"
    log = read_into_memory(IMPORTERS[kind], folder)
    if log.click.min() == log.click.max():
        raise ValidationError(
            "--dataset", f"taobao:{path}: all {len(log.click):,} impressions are labelled {log.click[0]:.0f}"
        )
    timed = kind == "taobao"  # DMR's rows have no time (the importer numbers them): no hour, split in file order
    spec = TabularSpec([(n, 1) for n in ("user", *PROFILE_COLUMNS, *_TAOBAO_AD)], ("log_price",))
    values: list[dict[str, object]] = []
    dense = np.zeros((len(log.ts), 1), dtype=np.float32)
    rows = zip(log.user_id.tolist(), log.ad_id.tolist(), log.placement.tolist(), log.ts.tolist(), strict=True)
    for r, (user_id, ad_id, pid, ts) in enumerate(rows):
        user, ad = log.users.get(user_id), log.ads.get(ad_id)  # an ad missing from ad_feature.csv: its id only
        campaign = None if ad is None else log.campaigns.get(ad.campaign_id)
        row: dict[str, object] = {"user": user_id, "ad": ad_id, "pid": pid}
        if ad is not None:
            row.update(campaign=ad.campaign_id, category=ad.category, brand=ad.brand)
            dense[r, 0] = math.log1p(ad.price or 0.0)
        if campaign is not None:
            row["advertiser"] = campaign.advertiser_id
        if timed:
            when = datetime.fromtimestamp(ts, UTC)
            row.update(hour=when.hour, weekday=when.weekday())
        if user is not None:
            row.update({c: user.attrs.get(c) for c in PROFILE_COLUMNS})
        values.append(row)
    examples = spec.encode(values, dense, log.click.tolist())
    order = log.ts if timed else np.arange(len(log.ts), dtype=np.float64)
    split = time_split(order, valid_share, test_share)
    name = f"taobao:{path} ({kind}, {len(log.ts):,} impressions)"
    return ClickDataset.from_split(name, spec, examples, split, log.user_id[split[2]])
