"""Generalized second-price (GSP) auction with a reserve price, in eCPM terms.

Ads are ranked by eCPM (expected revenue per thousand impressions): ``bid x pCTR x 1000`` for CPC,
``bid`` for CPM, ``bid x pCTR x pCVR x 1000`` for CPA. The ad in slot ``i`` pays the least that would still have
kept it above the next ad (slot ``i + 1``, or the best ad that did not make the list, or the reserve): its
competitor's eCPM converted back into its own billing unit by its own expected value per unit. The charge never
exceeds the bid and never falls below what the reserve requires.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["ecpm", "gsp_prices"]


def ecpm(
    pricing_model: npt.ArrayLike, bid: npt.ArrayLike, pctr: npt.ArrayLike, pcvr: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Expected revenue per thousand impressions of each ad."""
    pm = np.asarray(pricing_model)
    b = np.asarray(bid, dtype=np.float64)
    ctr = np.asarray(pctr, dtype=np.float64)
    cvr = np.asarray(pcvr, dtype=np.float64)
    return np.where(pm == "CPM", b, np.where(pm == "CPA", b * ctr * cvr * 1000.0, b * ctr * 1000.0))


def gsp_prices(
    ranked_ecpm: npt.ArrayLike,
    next_ecpm: float | npt.ArrayLike,
    pricing_model: npt.ArrayLike,
    bid: npt.ArrayLike,
    pctr: npt.ArrayLike,
    pcvr: npt.ArrayLike,
    reserve_ecpm: float = 0.0,
) -> npt.NDArray[np.float64]:
    """Charge per billable event for each ad of a ranked list (slot order); several lists at once as the rows of
    2-D arrays, with one ``next_ecpm`` per row.

    Parameters
    ----------
    ranked_ecpm
        eCPM of the ads in slot order (the order may differ from pure eCPM order after re-ranking).
    next_ecpm
        eCPM of the best ad that did not get a slot (0 when none); per row for 2-D lists.
    reserve_ecpm
        The floor, in eCPM: no ad pays less than the reserve requires (ads below it should not be ranked).

    Returns
    -------
    Per-click price (CPC), per-impression price (CPM, i.e. eCPM / 1000) or per-conversion price (CPA).
    """
    e = np.asarray(ranked_ecpm, dtype=np.float64)
    pm = np.asarray(pricing_model)
    b = np.asarray(bid, dtype=np.float64)
    ctr = np.asarray(pctr, dtype=np.float64)
    cvr = np.asarray(pcvr, dtype=np.float64)
    nxt = np.broadcast_to(np.asarray(next_ecpm, dtype=np.float64), e.shape[:-1])
    competitor = np.concatenate([e[..., 1:], nxt[..., None]], axis=-1) if e.shape[-1] else e
    # Slot order may differ from eCPM order (diversity): an ad never pays more than its own eCPM.
    pay_ecpm = np.minimum(np.maximum(competitor, reserve_ecpm), e)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_click = pay_ecpm / np.maximum(ctr * 1000.0, 1e-12)
        per_conversion = pay_ecpm / np.maximum(ctr * cvr * 1000.0, 1e-12)
    price = np.where(pm == "CPM", pay_ecpm / 1000.0, np.where(pm == "CPA", per_conversion, per_click))
    unit_bid = np.where(pm == "CPM", b / 1000.0, b)
    out: npt.NDArray[np.float64] = np.minimum(price, unit_bid)
    return out
