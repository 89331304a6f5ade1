"""Implicit-feedback train/test splits as shipped with LightGCN (Gowalla, Yelp2018, ...) and LightGCN-PyTorch.

Two folder layouts are recognised:

- **LightGCN** (kuandeng/LightGCN ``Data/<name>/``): ``train.txt`` and ``test.txt`` with one line per user,
  ``user item item ...`` (space-separated, 0-based remapped ids; a line may list no item), and optionally
  ``user_list.txt`` / ``item_list.txt`` (header ``org_id remap_id``) mapping remapped ids to original ones.
- **LightGCN-PyTorch Last.fm** (gusye1234/LightGCN-PyTorch ``data/lastfm/``): ``data1.txt`` (train) and
  ``test1.txt`` (test) with one pair per line, ``user<TAB>item<TAB>weight`` (1-based ids, weight = listening
  count, sometimes written as a float). ``trustnetwork.txt`` (friendships) is not imported: the store has no
  social graph.

Mapping (``<ds>`` is the folder name, e.g. ``gowalla_lightgcn``; ids are kept as written in the files):

- users ``<ds>:<user>`` and ads ``<ds>:<item>``; from the list files when present (the original id goes into
  ``User.attrs["org_id"]`` and ``Ad.title``), otherwise from the pairs. One advertiser and one campaign, both
  ``<ds>`` (CPC, bid 1.0), own every item.
- every pair → one CLICK event with id ``<ds>:<split>:<user>:<item>`` and ``placement = <split>``, where
  split is ``"train"`` or ``"test"``: filter on placement to recover the published split. The Last.fm weight
  goes into ``value``.
- the files have no timestamps: ``ts`` is :data:`BASE_TS` (2020-01-01 UTC) plus the line number in seconds for
  train pairs, and additionally plus :data:`TEST_OFFSET` (365 days) for test pairs, so that file order is
  kept and every test event comes after every train event.
"""

from __future__ import annotations

import re
from pathlib import Path

from adrec.data.importers.base import (
    Chunk,
    Importer,
    Plan,
    RowHandler,
    TextFile,
    dataset_market,
    parse_float,
    parse_id,
    parse_int,
    require_dir,
)
from adrec.data.schema import Ad, EventType, User
from adrec.exceptions import ImportFormatError

__all__ = ["BASE_TS", "IMPORTER", "TEST_OFFSET"]

BASE_TS = 1_577_836_800.0
"""2020-01-01T00:00:00Z: the time train events are placed at (plus their line number in seconds)."""
TEST_OFFSET = 365 * 86_400.0
"""Added to the time of test events so they follow every train event."""

_EXPECTS = (
    "a LightGCN dataset folder holding train.txt and test.txt (lines 'user item item ...'; optional "
    "user_list.txt and item_list.txt), or a LightGCN-PyTorch Last.fm folder holding data1.txt and test1.txt "
    "(lines 'user<TAB>item<TAB>weight')"
)


def _dataset_name(folder: Path) -> str:
    name = re.sub(r"[^\w.-]+", "_", folder.resolve().name).strip("_")[:60]
    return name or "lightgcn"


def _ensure_user(out: Chunk, ds: str, user: int) -> str:
    user_id = f"{ds}:{user}"
    if out.first(f"user:{user_id}"):
        out.users.append(User(user_id=user_id))
    return user_id


def _ensure_ad(out: Chunk, ds: str, item: int) -> str:
    ad_id = f"{ds}:{item}"
    if out.first(f"ad:{ad_id}"):
        out.ads.append(Ad(ad_id=ad_id, campaign_id=ds))
    return ad_id


def _user_list(ds: str) -> RowHandler:
    def handle(fields: list[str], _line: int, out: Chunk) -> None:
        org_id = parse_id(fields[0], "org_id")
        user_id = f"{ds}:{parse_int(fields[1], 'remap_id', lo=0)}"
        if out.first(f"user:{user_id}"):
            out.users.append(User(user_id=user_id, attrs={"org_id": org_id}))

    return handle


def _item_list(ds: str) -> RowHandler:
    def handle(fields: list[str], _line: int, out: Chunk) -> None:
        org_id = parse_id(fields[0], "org_id")
        ad_id = f"{ds}:{parse_int(fields[1], 'remap_id', lo=0)}"
        if out.first(f"ad:{ad_id}"):
            out.ads.append(Ad(ad_id=ad_id, campaign_id=ds, title=org_id))

    return handle


def _user_items(ds: str, split: str) -> RowHandler:
    """Handler of a ``user item item ...`` line."""
    base = BASE_TS + (TEST_OFFSET if split == "test" else 0.0)

    def handle(fields: list[str], line: int, out: Chunk) -> None:
        user = parse_int(fields[0], "user", lo=0)
        items = [parse_int(text, f"items[{k}]", lo=0) for k, text in enumerate(fields[1:])]
        user_id = _ensure_user(out, ds, user)
        ts = base + line
        for item in items:
            ad_id = _ensure_ad(out, ds, item)
            out.event(f"{ds}:{split}:{user}:{item}", EventType.CLICK, user_id, ad_id, ts, placement=split)

    return handle


def _weighted_pair(ds: str, split: str) -> RowHandler:
    """Handler of a ``user<TAB>item<TAB>weight`` line."""
    base = BASE_TS + (TEST_OFFSET if split == "test" else 0.0)

    def handle(fields: list[str], line: int, out: Chunk) -> None:
        user = parse_int(fields[0], "user", lo=0)
        item = parse_int(fields[1], "item", lo=0)
        weight = parse_float(fields[2], "weight", lo=0.0)
        user_id = _ensure_user(out, ds, user)
        ad_id = _ensure_ad(out, ds, item)
        out.event(
            f"{ds}:{split}:{user}:{item}",
            EventType.CLICK,
            user_id,
            ad_id,
            base + line,
            placement=split,
            value=weight,
        )

    return handle


def plan(path: Path) -> Plan:
    """The list files (if any), then the train pairs, then the test pairs of the folder ``path``."""
    folder = require_dir(path, _EXPECTS)
    ds = _dataset_name(folder)
    advertiser, campaign = dataset_market(ds, f"{ds} (LightGCN split)")
    files: list[TextFile]
    if (folder / "train.txt").is_file() and (folder / "test.txt").is_file():
        files = []
        if (folder / "user_list.txt").is_file():
            files.append(
                TextFile(folder / "user_list.txt", _user_list(ds), delimiter=None, header=("org_id", "remap_id"))
            )
        if (folder / "item_list.txt").is_file():
            files.append(
                TextFile(folder / "item_list.txt", _item_list(ds), delimiter=None, header=("org_id", "remap_id"))
            )
        files += [
            TextFile(folder / "train.txt", _user_items(ds, "train"), delimiter=None),
            TextFile(folder / "test.txt", _user_items(ds, "test"), delimiter=None),
        ]
    elif (folder / "data1.txt").is_file() and (folder / "test1.txt").is_file():
        files = [
            TextFile(folder / "data1.txt", _weighted_pair(ds, "train"), delimiter=None, n_fields=3),
            TextFile(folder / "test1.txt", _weighted_pair(ds, "test"), delimiter=None, n_fields=3),
        ]
    else:
        present = sorted(p.name for p in folder.iterdir())[:10]
        raise ImportFormatError(
            f"{folder} has neither train.txt+test.txt nor data1.txt+test1.txt; expected {_EXPECTS}"
            f" (found: {', '.join(present) or 'nothing'})"
        )
    return Plan(advertisers=[advertiser], campaigns=[campaign], files=files)


IMPORTER = Importer(
    name="lightgcn",
    description="LightGCN train/test folder (Gowalla, ...; or LightGCN-PyTorch Last.fm): pairs as clicks",
    expects=_EXPECTS,
    plan=plan,
)
