"""Stable assignment of users to experiment arms by a salted hash of the user id."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from adrec.exceptions import ValidationError

__all__ = ["assign_arms", "unit_hash"]


def unit_hash(user_id: str, salt: str) -> float:
    """A number in [0, 1) fixed by ``(salt, user_id)``: the first 8 bytes of SHA-256 of ``salt:user_id``."""
    digest = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_arms(user_ids: Sequence[str], weights: Sequence[float], salt: str) -> npt.NDArray[np.int64]:
    """The arm (index into ``weights``) of each user: arm ``j`` takes the users whose :func:`unit_hash` falls in
    its share ``weights[j] / sum(weights)`` of [0, 1). The same user, salt and weights always give the same arm;
    another salt reshuffles users independently of the first."""
    w = np.asarray(weights, dtype=np.float64)
    if len(w) == 0 or not np.isfinite(w).all() or (w <= 0).any():
        raise ValidationError("experiment.arms.traffic", "every arm needs a traffic share > 0")
    edges = np.cumsum(w / w.sum())
    edges[-1] = 1.0
    h = np.fromiter((unit_hash(u, salt) for u in user_ids), dtype=np.float64, count=len(user_ids))
    out: npt.NDArray[np.int64] = np.searchsorted(edges, h, side="right").astype(np.int64)
    return out
