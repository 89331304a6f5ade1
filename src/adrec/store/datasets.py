"""Datasets for training and offline evaluation, named by a spec string ``KIND:LOCATION`` (:func:`load_dataset`),
and the interactions a store holds (:func:`from_store`).

==========================  =================================================================================
spec                        what it gives
==========================  =================================================================================
``lightgcn:PATH``           the published ``train.txt``/``test.txt`` split (Gowalla, ...), read directly
``movielens:PATH``          MovieLens-100k through the ``movielens`` importer; clicks (rating >= 4) as
                            positives, a random 80/20 split per user (seeded); categories = primary genre
``store:URL``               clicks in a store (e.g. the simulated market); the latest 20 % of each user's
                            clicks form the test set (temporal split); categories from the ads
==========================  =================================================================================

Loading lives here, above the store, because two kinds go through one; the :class:`Dataset` record itself lives in
:mod:`adrec.data.datasets`. Everything that parses files goes through :mod:`adrec.data.importers` (one validated
parser per format) except ``lightgcn``, whose two files are read straight into a matrix because benchmarks load
them often.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from adrec.data.datasets import Dataset
from adrec.data.interactions import IdMap, Interactions, load_lightgcn
from adrec.data.schema import EventType
from adrec.data.splits import random_split, temporal_split
from adrec.exceptions import ValidationError
from adrec.store.base import Store, open_store

__all__ = ["Dataset", "StoreInteractions", "from_store", "load_dataset"]


@dataclass
class StoreInteractions:
    """Positive events of a store as a matrix, with the time of each stored entry and the ads' metadata."""

    interactions: Interactions
    timestamps: sp.csr_matrix
    item_categories: npt.NDArray[np.int64]
    category_names: list[str]
    item_titles: list[str]


def from_store(
    store: Store, event_types: tuple[EventType, ...] = (EventType.CLICK,), *, before: float | None = None
) -> StoreInteractions:
    """Users × ads matrix of the store's events of ``event_types`` (those before ``before``, if given; repeats
    merged; latest time kept).

    Items are every ad of the catalogue (so never-clicked ads exist in the index space), then any other ad id
    seen in events. Users are those with at least one such event.
    """
    items = IdMap()
    titles: list[str] = []
    cats: list[str | None] = []
    for batch in store.iter_ads():
        for ad in batch:
            items.fit_partial([ad.ad_id])
            titles.append(ad.title)
            cats.append(ad.category)
    user_ids: list[npt.NDArray[np.object_]] = []
    ad_ids: list[npt.NDArray[np.object_]] = []
    times: list[npt.NDArray[np.float64]] = []
    for ev in store.iter_events(types=list(event_types)):
        if before is not None:
            ev = ev.take(np.flatnonzero(ev.ts < before))
        user_ids.append(ev.user_id)
        ad_ids.append(ev.ad_id)
        times.append(ev.ts)
    if not user_ids or not sum(len(u) for u in user_ids):
        raise ValidationError("store", f"holds no events of type {[t.name.lower() for t in event_types]}")
    u_all, a_all, t_all = np.concatenate(user_ids), np.concatenate(ad_ids), np.concatenate(times)
    users = IdMap().fit(u_all.tolist())
    before = len(items)
    items.fit_partial(a_all.tolist())
    titles += [""] * (len(items) - before)
    cats += [None] * (len(items) - before)
    u_idx, i_idx = users.transform(u_all.tolist()), items.transform(a_all.tolist())
    shape = (len(users), len(items))
    # Keep the latest time of repeated (user, ad) pairs: build with max via sorting by time (later wins).
    order = np.argsort(t_all, kind="stable")
    key = u_idx[order] * shape[1] + i_idx[order]
    _, last = np.unique(key[::-1], return_index=True)
    latest = order[::-1][last]
    matrix = sp.csr_matrix((np.ones(len(latest), np.float32), (u_idx[latest], i_idx[latest])), shape=shape)
    ts = sp.csr_matrix((t_all[latest], (u_idx[latest], i_idx[latest])), shape=shape)
    ts.sort_indices()
    names = sorted({c for c in cats if c is not None})
    code = {c: n for n, c in enumerate(names)}
    categories = np.array([code[c] if c is not None else -1 for c in cats], dtype=np.int64)
    return StoreInteractions(Interactions(matrix, users, items), ts, categories, names, titles)


def _from_store_split(name: str, store: Store, *, temporal: bool, seed: int) -> Dataset:
    data = from_store(store)
    if temporal:
        train, test = temporal_split(data.interactions, data.timestamps, 0.2)
    else:
        train, test = random_split(data.interactions, 0.2, random_state=seed)
    return Dataset(name, train, test, data.item_categories, data.category_names, data.item_titles)


def load_dataset(spec: str, *, seed: int = 0) -> Dataset:
    """Load the dataset named by ``spec`` (see the module docstring)."""
    kind, sep, location = spec.partition(":")
    if not sep or not location:
        raise ValidationError(
            "dataset", f"{spec!r} is not KIND:LOCATION (e.g. lightgcn:../shared/data/gowalla_lightgcn)"
        )
    if kind == "lightgcn":
        train, test = load_lightgcn(location)
        return Dataset(f"lightgcn:{Path(location).name}", train, test)
    if kind == "movielens":
        from adrec.data.importers import run_import

        with open_store("sqlite://") as store:
            run_import("movielens", location, store, progress=False)
            return _from_store_split(f"movielens:{Path(location).name}", store, temporal=False, seed=seed)
    if kind == "store":
        with open_store(location, create=False) as store:
            return _from_store_split(f"store:{location}", store, temporal=True, seed=seed)
    raise ValidationError("dataset", f"unknown kind {kind!r} in {spec!r}; use lightgcn:, movielens: or store:")
