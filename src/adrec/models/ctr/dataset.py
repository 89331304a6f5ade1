"""A click (or conversion) dataset: encoded train, validation and test examples, with what the test report groups
by."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from adrec.data.profile import Behaviour
from adrec.data.schema import User
from adrec.models.ctr.features import AdBlock, Examples, FeatureSpec, HashedSpec

__all__ = ["ClickDataset", "campaign_rate", "check_shares", "encode_by_period", "profile_boundaries", "time_split"]


@dataclass(frozen=True)
class ClickDataset:
    """Examples split by time: ``train`` (learning), ``valid`` (early stopping and calibration), ``test``.

    ``test_users`` (external user ids) serve the group AUC; ``test_fields`` (field name → value per test
    example, e.g. the advertiser) the field-level calibration; ``test_truth`` holds the true click probability of
    each test example where it is known (a simulated market), for the oracle's figures; ``test_rows`` its keys.
    """

    name: str
    spec: HashedSpec
    train: Examples
    valid: Examples
    test: Examples
    test_users: npt.NDArray[np.object_]
    test_fields: dict[str, npt.NDArray[np.object_]] = field(default_factory=dict)
    test_truth: npt.NDArray[np.float64] | None = None
    test_rows: dict[str, npt.NDArray[np.int64]] | None = None
    """Where the test examples come from in the source (a simulated market: ``user_idx``, ``ad_idx`` and
    ``position``), for diagnostics against the source's truth."""
    test_truth_top: npt.NDArray[np.float64] | None = None
    """The true click probability of each test example had it been shown at
    :data:`~adrec.models.ctr.features.REFERENCE_POSITION`, where serving scores every candidate (click datasets of
    a simulated market)."""
    baselines: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)
    """Simple predictors of the test labels to report beside the models (name → probability per test example),
    e.g. the per-campaign conversion rate serving falls back to."""

    @classmethod
    def from_split(
        cls,
        name: str,
        spec: HashedSpec,
        examples: Examples,
        split: tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp]],
        test_users: npt.NDArray[np.object_],
        **more: Any,
    ) -> ClickDataset:
        """The dataset of ``examples`` split into the rows of train, validation and test (:func:`time_split`);
        ``more`` sets the other fields."""
        train, valid, test = split
        return cls(
            name=name,
            spec=spec,
            train=examples.take(train),
            valid=examples.take(valid),
            test=examples.take(test),
            test_users=test_users,
            **more,
        )

    @property
    def base_rate(self) -> float:
        """The click rate of the training examples."""
        return float(self.train.labels.mean())

    def describe(self) -> str:
        return (
            f"{self.name}: {len(self.train):,} train / {len(self.valid):,} valid / {len(self.test):,} test examples, "
            f"positive rate {self.base_rate:.4f}"
        )


def check_shares(profile_share: float, valid_share: float, test_share: float) -> None:
    """The time shares of a dataset built from a log: the profile span and the validation span must be in (0, 1),
    the test span in [0, 1) (0: every example after the profiles trains or validates), leaving some to train on."""
    for name, share, lo_open in (
        ("profile_share", profile_share, True),
        ("valid_share", valid_share, True),
        ("test_share", test_share, False),
    ):
        if not ((share > 0) if lo_open else (share >= 0)) or not share < 1:
            raise ValueError(f"{name} must be in {'(' if lo_open else '['}0, 1); got {share}")
    if valid_share + test_share >= 1:
        raise ValueError("valid_share + test_share must leave examples to train on")


def time_split(
    ts: npt.NDArray[np.float64], valid_share: float, test_share: float
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Row indices of train, validation and test: the last ``test_share`` of the span of ``ts`` is the test set,
    the ``valid_share`` before it the validation set, the rest training."""
    lo, hi = (float(ts.min()), float(ts.max())) if len(ts) else (0.0, 0.0)
    test_from = hi - test_share * (hi - lo) if test_share > 0 else math.inf
    valid_from = (test_from if test_share > 0 else hi) - valid_share * (hi - lo)
    train = np.flatnonzero(ts < valid_from)
    valid = np.flatnonzero((ts >= valid_from) & (ts < test_from))
    test = np.flatnonzero(ts >= test_from)
    return train, valid, test


def campaign_rate(
    campaign: npt.NDArray[np.integer],
    label: npt.NDArray[np.floating],
    seen: npt.NDArray[np.intp],
    n_campaigns: int,
    prior: float,
) -> npt.NDArray[np.float64]:
    """Each campaign's rate of ``label`` over the rows ``seen``, shrunk towards the overall rate with the weight of
    ``prior`` rows (as serving estimates a campaign's conversion rate without a conversion model); indexed by
    campaign."""
    counts = np.bincount(campaign[seen], minlength=n_campaigns).astype(np.float64)
    positives = np.bincount(campaign[seen], weights=label[seen], minlength=n_campaigns)
    overall = (positives.sum() + 1.0) / (counts.sum() + 2.0)
    return np.asarray((positives + prior * overall) / (counts + prior), dtype=np.float64)


def profile_boundaries(cut: float, end: float, every_s: float | None) -> list[float]:
    """When a profile job runs every ``every_s`` seconds from ``cut`` until ``end`` (None: once, at the cut): the
    start of each profile period of a dataset's examples."""
    if every_s is None:
        return [cut]
    if not every_s > 0:
        raise ValueError(f"profile_every_s must be > 0 or None; got {every_s}")
    return [cut + i * every_s for i in range(int((end - cut) // every_s) + 1)]


def encode_by_period(
    spec: FeatureSpec,
    boundaries: list[float],
    snapshots: Iterable[Mapping[str, Behaviour]],
    ts: npt.NDArray[np.float64],
    user_ids: npt.NDArray[np.object_],
    users: Callable[[list[str]], Mapping[str, User]],
    ads: AdBlock,
    ad_rows: npt.NDArray[np.integer],
    context: npt.NDArray[np.int64],
    position: npt.NDArray[np.int64],
    label: npt.NDArray[np.float32],
) -> Examples:
    """The examples (one per row of ``ts``), each encoded with the behaviour profiles of its period: the snapshot
    (user id → behaviour, one per boundary, as :meth:`~adrec.profiles.ProfileBuilder.snapshots` gives them) of the
    last boundary at or before it. ``users`` gives the records of the users it knows; a user it does not know is
    known by id only, with no behaviour, as serving encodes a user without a stored record."""
    period = np.searchsorted(np.asarray(boundaries), ts, side="right") - 1
    parts: list[Examples] = []
    rows: list[npt.NDArray[np.intp]] = []
    for i, behaviours in enumerate(snapshots):
        mine = np.flatnonzero(period == i)
        if not len(mine):
            continue
        ids, user_rows = np.unique(user_ids[mine], return_inverse=True)
        known = users(ids.tolist())
        records = [known.get(u) or User.model_construct(user_id=u) for u in ids.tolist()]
        block = spec.users(records, [behaviours.get(u) if u in known else None for u in ids.tolist()])
        parts.append(spec.assemble(block, user_rows, ads, ad_rows[mine], context[mine], position[mine], label[mine]))
        rows.append(mine)
    return Examples.concat(parts).take(np.argsort(np.concatenate(rows), kind="stable"))
