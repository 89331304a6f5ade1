"""Criteo Display Advertising Challenge CTR log (Kaggle 2014): labelled rows of anonymous features.

Two layouts are read: the original ``train.txt`` (tab-separated, no header: ``label``, ``I1..I13``,
``C1..C26``) and the CSV with header ``label,I1,...,I13,C1,...,C26`` that DeepCTR and others ship. ``path`` is
such a file or a folder of them (``*.txt``, ``*.csv``); the layout is told from each file's first line.

Every row → one :class:`~adrec.data.records.CtrExample` with ``source`` = the file name, ``line`` = its line
number in the file, ``label`` 0/1 and ``features = {"I1": int | None, ..., "C26": str | None}``: the integer
counts as ``int`` (the CSV writes them as floats, e.g. ``260.0``), the hashed categories as 8-hex-digit
strings, ``None`` when the value is missing (empty). There are no timestamps (``ts`` is ``None``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from adrec.data.importers.base import (
    Chunk,
    Importer,
    Plan,
    RowHandler,
    TextFile,
    input_files,
    parse_flag,
    parse_float,
)
from adrec.data.records import CtrExample
from adrec.exceptions import ImportFormatError, ValidationError

__all__ = ["CATEGORICAL_COLUMNS", "HEADER", "IMPORTER", "INTEGER_COLUMNS"]

INTEGER_COLUMNS = tuple(f"I{i}" for i in range(1, 14))
CATEGORICAL_COLUMNS = tuple(f"C{i}" for i in range(1, 27))
HEADER = ("label", *INTEGER_COLUMNS, *CATEGORICAL_COLUMNS)

_HASH = re.compile(r"[0-9a-fA-F]{8}")
_EXPECTS = (
    "a Criteo CTR file: tab-separated label, I1..I13, C1..C26 without header, or CSV with the header "
    "label,I1..I13,C1..C26 (or a folder of such *.txt / *.csv files)"
)


def _count(text: str, name: str) -> int:
    value = parse_float(text, name)
    if not value.is_integer():
        raise ValidationError(name, f"expected an integer count, got {text!r}")
    return int(value)


def _category(text: str, name: str) -> str:
    if not _HASH.fullmatch(text):
        raise ValidationError(name, f"expected 8 hex digits, got {text!r}")
    return text


def _row(source: str) -> RowHandler:
    def handle(fields: list[str], line: int, out: Chunk) -> None:
        label = parse_flag(fields[0], "label")
        features: dict[str, Any] = {}
        for name, text in zip(INTEGER_COLUMNS, fields[1:14], strict=True):
            features[name] = _count(text, name) if text else None
        for name, text in zip(CATEGORICAL_COLUMNS, fields[14:], strict=True):
            features[name] = _category(text, name) if text else None
        out.ctr_examples.append(CtrExample(source=source, line=line, label=int(label), features=features))

    return handle


def _text_file(path: Path) -> TextFile:
    with path.open("rb") as stream:
        first = stream.readline()
    if first.startswith(b"label,"):
        return TextFile(path, _row(path.name), header=HEADER)
    if first.count(b"\t") == len(HEADER) - 1:
        return TextFile(path, _row(path.name), delimiter="\t", n_fields=len(HEADER))
    raise ImportFormatError(
        f"{path}:1: starts neither with the header 'label,I1,...' nor with 40 tab-separated fields; expected {_EXPECTS}"
    )


def plan(path: Path) -> Plan:
    """Every Criteo file at ``path``, in name order."""
    return Plan(files=[_text_file(p) for p in input_files(path, ["*.txt", "*.csv"], _EXPECTS)])


IMPORTER = Importer(
    name="criteo",
    description="Criteo CTR log (TSV, or CSV with header): labelled rows of 13 counts, 26 hashed categories",
    expects=_EXPECTS,
    plan=plan,
)
