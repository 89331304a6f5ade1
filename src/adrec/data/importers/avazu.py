"""Avazu mobile-ad CTR log (Kaggle 2014 ``train`` file): labelled rows of anonymous features.

``path`` is a CSV file with the header ``id,click,hour,C1,banner_pos,...,C21`` or a folder of them (``*.txt``,
``*.csv``; a ``test`` file without the ``click`` column is rejected).

Every row → one :class:`~adrec.data.records.CtrExample` with ``source`` = the file name, ``line`` = its line
number in the file, ``label`` = ``click`` and ``ts`` = ``hour`` (``YYMMDDHH``, UTC) as seconds since the
epoch. The features are every column except ``id`` and ``click``, as strings (hashed values and integer
codes alike), ``hour`` included so models can use the hour of day.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from adrec.data.importers.base import (
    Chunk,
    Importer,
    Plan,
    RowHandler,
    TextFile,
    input_files,
    parse_flag,
    parse_id,
)
from adrec.data.records import CtrExample
from adrec.exceptions import ValidationError

__all__ = ["HEADER", "IMPORTER"]

HEADER = (
    "id",
    "click",
    "hour",
    "C1",
    "banner_pos",
    "site_id",
    "site_domain",
    "site_category",
    "app_id",
    "app_domain",
    "app_category",
    "device_id",
    "device_ip",
    "device_model",
    "device_type",
    "device_conn_type",
    *(f"C{i}" for i in range(14, 22)),
)
_FEATURES = HEADER[2:]
_EXPECTS = "an Avazu CTR CSV file with the header id,click,hour,C1,banner_pos,...,C21 (or a folder of them)"


def parse_hour(text: str) -> float:
    """Seconds since the epoch of an Avazu ``YYMMDDHH`` hour (UTC)."""
    try:
        if len(text) != 8 or not text.isdigit():
            raise ValueError(text)
        when = datetime(2000 + int(text[:2]), int(text[2:4]), int(text[4:6]), int(text[6:]), tzinfo=UTC)
    except ValueError:
        raise ValidationError("hour", f"expected YYMMDDHH, got {text!r}") from None
    return when.timestamp()


def _row(source: str) -> RowHandler:
    def handle(fields: list[str], line: int, out: Chunk) -> None:
        parse_id(fields[0], "id")
        label = parse_flag(fields[1], "click")
        ts = parse_hour(fields[2])
        features = {name: parse_id(text, name) for name, text in zip(_FEATURES, fields[2:], strict=True)}
        out.ctr_examples.append(CtrExample(source=source, line=line, label=int(label), features=features, ts=ts))

    return handle


def plan(path: Path) -> Plan:
    """Every Avazu file at ``path``, in name order."""
    return Plan(
        files=[TextFile(p, _row(p.name), header=HEADER) for p in input_files(path, ["*.txt", "*.csv"], _EXPECTS)]
    )


IMPORTER = Importer(
    name="avazu",
    description="Avazu mobile-ad CTR log (CSV with header): labelled rows of anonymous context features",
    expects=_EXPECTS,
    plan=plan,
)
