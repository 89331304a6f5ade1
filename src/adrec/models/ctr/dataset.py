"""A click (or conversion) dataset: encoded train, validation and test examples, with what the test report groups
by."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from adrec.models.ctr.features import Examples, FeatureSpec

__all__ = ["ClickDataset"]


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
