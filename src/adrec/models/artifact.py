"""A trained model on disk together with what serving it needs: the id maps, the items each user has already
interacted with (to exclude them), and item titles. Written by ``adrec train``, read by ``adrec recommend``.

Layout of the folder: the model's own ``params.json`` + ``arrays.npz``, plus ``ids.json`` (user ids, item ids,
titles, dataset name) and ``seen.npz`` (the training matrix, CSR arrays). No pickle anywhere. Folders are written
under a hidden name and renamed into place when complete (:meth:`Artifact.save`); readers skip hidden folders.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from adrec.data.interactions import IdMap, Interactions
from adrec.exceptions import NotFoundError
from adrec.models.base import Recommender

__all__ = ["Artifact", "Recommendation"]


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    title: str
    score: float


@dataclass
class Artifact:
    model: Recommender
    users: IdMap
    items: IdMap
    seen: sp.csr_matrix
    titles: list[str]
    dataset: str
    calibration: dict[str, Any] | None = None
    """pCTR calibration fitted on impressions the model's training never saw (the fields of
    :class:`adrec.serving.calibration.Calibrator`), saved with it; None: the server fits one when it loads."""

    @classmethod
    def create(
        cls, model: Recommender, train: Interactions, *, titles: list[str] | None = None, dataset: str = ""
    ) -> Artifact:
        return cls(model, train.users, train.items, train.matrix, titles or [], dataset)

    def save(self, path: str | Path, *, keep: Sequence[str] = ()) -> Path:
        """Write the folder ``path`` atomically: into a hidden sibling first (``.NAME.partial-…``), renamed into
        place once complete, so a reader (a server reloading its model) never sees a half-written model, and a save
        that dies half-way leaves the previous model where it was. An existing folder at ``path`` is replaced, but
        for its sub-folders named in ``keep`` (models trained apart and saved into it, e.g. serving's ``ctr/``),
        which are copied into the new one."""
        root = Path(path)
        root.parent.mkdir(parents=True, exist_ok=True)
        tag = f"{os.getpid()}-{secrets.token_hex(4)}"
        partial = root.parent / f".{root.name}.partial-{tag}"
        try:
            self.model.save(partial)
            meta = {"dataset": self.dataset, "users": self.users.ids, "items": self.items.ids, "titles": self.titles}
            (partial / "ids.json").write_text(json.dumps(meta))
            if self.calibration is not None:
                (partial / "calibration.json").write_text(json.dumps(self.calibration))
            m = self.seen.tocsr()
            np.savez(partial / "seen.npz", data=m.data, indices=m.indices, indptr=m.indptr, shape=np.array(m.shape))
            for name in keep:
                if (root / name).is_dir() and not (partial / name).exists():
                    shutil.copytree(root / name, partial / name)
            if root.exists():
                old = root.parent / f".{root.name}.old-{tag}"
                os.rename(root, old)
                os.rename(partial, root)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(partial, root)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        return root

    @classmethod
    def load(cls, path: str | Path) -> Artifact:
        root = Path(path)
        if not (root / "ids.json").is_file():
            raise NotFoundError(f"{root} is not a model folder written by `adrec train` (ids.json missing)")
        model = Recommender.load(root)
        meta = json.loads((root / "ids.json").read_text())
        with np.load(root / "seen.npz", allow_pickle=False) as z:
            seen = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
        calibration = root / "calibration.json"
        return cls(
            model,
            IdMap.from_ids(meta["users"]),
            IdMap.from_ids(meta["items"]),
            seen,
            meta["titles"],
            meta["dataset"],
            json.loads(calibration.read_text()) if calibration.is_file() else None,
        )

    def recommend(self, user_id: str, k: int = 10, *, include_seen: bool = False) -> list[Recommendation]:
        """Top-``k`` items for an external user id, excluding what the user already interacted with."""
        if user_id not in self.users:
            raise NotFoundError(
                f"user {user_id!r} is not in the training data of this model ({len(self.users):,} users); "
                "cold-start users are served by the serving pipeline"
            )
        u = self.users.index(user_id)
        exclude = None if include_seen else self.seen[[u]]
        ids, scores = self.model.recommend(u, k, exclude=exclude)
        return [
            Recommendation(str(self.items.inverse([i])[0]), self.titles[i] if i < len(self.titles) else "", float(s))
            for i, s in zip(ids.tolist(), scores.tolist(), strict=True)
        ]
