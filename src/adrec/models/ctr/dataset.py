"""A click (or conversion) dataset: encoded train, validation and test examples, with what the test report groups
by."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from adrec.models.ctr.features import Examples, FeatureSpec

__all__ = ["ClickDataset", "campaign_rate", "check_shares", "time_split"]


@dataclass(frozen=True)
class ClickDataset:
    """Examples split by time: ``train`` (learning), ``valid`` (early stopping and calibration), ``test``.

    ``test_users`` (external user ids) serve the group AUC; ``test_fields`` (field name → value per test
    example, e.g. the advertiser) the field-level calibration; ``test_truth`` holds the true click probability of
    each test example where it is known (a simulated market), for the oracle's figures; ``test_rows`` its keys.
    """

    name: str
    spec: FeatureSpec
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
