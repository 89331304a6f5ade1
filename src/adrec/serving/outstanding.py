"""Tokens handed out whose events may still come: what serving must count before the ledger sees them.

A served ad is billed (and counted against frequency caps) only when its events reach the ledger, which can be
minutes later and in one batch. Until then, serving would keep handing out ads of a campaign whose budget those
tokens will spend, and keep showing a user a campaign whose cap those tokens will fill. :class:`Outstanding` keeps,
per process, the expected cost of recent tokens per campaign (budgets throttle on spend + outstanding) and, for
campaigns with frequency caps, which ads each user was just served (caps count them). The ledger stays the hard
guarantee (it never charges above a budget and refuses impressions beyond a cap); this keeps serving from handing
out what the ledger would then refuse or not bill.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Sequence

__all__ = ["Outstanding"]


class Outstanding:
    """Recent tokens of one serving process.

    Parameters
    ----------
    window_s
        How long a token's expected cost counts against its campaign's budget (its events usually come within
        minutes). The cost of tokens whose events already came is then counted twice for up to this long: serving
        errs towards spending a little less, never more.
    bucket_s
        Time resolution of that window.
    max_users
        How many users' served ads are remembered for frequency caps (least recently served forgotten first).
    """

    def __init__(self, window_s: float = 600.0, *, bucket_s: float = 10.0, max_users: int = 1_000_000) -> None:
        self.window_s = window_s
        self.bucket_s = bucket_s
        self.max_users = max_users
        self._buckets: deque[tuple[int, dict[str, float]]] = deque()
        self._total: dict[str, float] = {}
        """The sum of every kept bucket, per campaign (kept as buckets come and go: a query need not add up the
        whole window, only take off the buckets that fell out of it since)."""
        self._served: OrderedDict[str, list[tuple[str, str, float]]] = OrderedDict()
        self._lock = threading.Lock()

    def add(
        self,
        now: float,
        user_id: str,
        costs: Sequence[tuple[str, float]],
        capped: Sequence[tuple[str, str]] = (),
        cap_window_s: float = 0.0,
    ) -> None:
        """Record one response: ``(campaign, expected cost)`` per served ad, and ``(campaign, ad)`` of the served
        ads whose campaigns have frequency caps (kept for ``cap_window_s``, the longest cap window)."""
        if self.window_s <= 0:
            return
        bucket = int(now // self.bucket_s)
        with self._lock:
            if not self._buckets or self._buckets[-1][0] != bucket:
                self._buckets.append((bucket, {}))
                oldest = bucket - int(self.window_s // self.bucket_s)
                while self._buckets and self._buckets[0][0] < oldest:
                    _subtract(self._total, self._buckets.popleft()[1])
            spend = self._buckets[-1][1]
            total = self._total
            for campaign, cost in costs:
                spend[campaign] = spend.get(campaign, 0.0) + cost
                total[campaign] = total.get(campaign, 0.0) + cost
            if capped:
                recent = [x for x in self._served.pop(user_id, []) if now - x[2] <= cap_window_s]
                recent += [(campaign, ad, now) for campaign, ad in capped]
                self._served[user_id] = recent
                while len(self._served) > self.max_users:
                    self._served.popitem(last=False)

    def expected_cost(self, now: float) -> dict[str, float]:
        """Per campaign, the expected cost of its tokens handed out within the window before ``now``."""
        oldest = int((now - self.window_s) // self.bucket_s)
        with self._lock:
            out = dict(self._total)
            stale = []
            for bucket, spend in self._buckets:  # oldest first: only the front can have left the window
                if bucket >= oldest:
                    break
                stale.append(spend)
        for spend in stale:
            _subtract(out, spend)
        return out

    def served(self, user_id: str) -> list[tuple[str, str, float]]:
        """``(campaign, ad, time)`` of the ads of capped campaigns recently served to ``user_id``."""
        with self._lock:
            return list(self._served.get(user_id, ()))


def _subtract(total: dict[str, float], spend: dict[str, float]) -> None:
    """Take a bucket's costs off running totals; a total left at zero (up to rounding) is dropped."""
    for campaign, cost in spend.items():
        left = total.get(campaign, 0.0) - cost
        if left > 1e-9 * max(cost, 1.0):
            total[campaign] = left
        else:  # the campaign's last kept token
            total.pop(campaign, None)
