"""The dataset record: a train/test pair over one index space, for training and offline evaluation.

Datasets are loaded by name with :func:`adrec.store.datasets.load_dataset` (above the store, since some kinds are
imported into one or read from one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from adrec.data.interactions import Interactions

__all__ = ["Dataset"]


@dataclass
class Dataset:
    """A train/test pair over one user and item index space, with optional item categories."""

    name: str
    train: Interactions
    test: Interactions
    item_categories: npt.NDArray[np.int64] | None = None
    """``(n_items,)`` category code per item (``-1`` unknown), for diversity metrics."""
    category_names: list[str] = field(default_factory=list)
    item_titles: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, train={self.train!r}, test nnz={self.test.nnz})"
