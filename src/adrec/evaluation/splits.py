"""Train/test splits, defined in :mod:`adrec.data.splits` (datasets and models split data too) and re-exported
here for evaluation code."""

from adrec.data.splits import leave_last_out, random_split, temporal_split

__all__ = ["leave_last_out", "random_split", "temporal_split"]
