"""Shared machinery of the importers: a line reader that tracks file and line, field parsers, a chunked writer
and the two-pass validate-then-write runner.

A format module describes *what* to read as a :class:`Plan`: a few fixed records (the dataset's advertiser
and campaign) and a list of :class:`TextFile` steps, each with a row handler that turns the fields of one line
into records appended to a :class:`Chunk`. The runner (:func:`execute`) does the rest, one file at a time:

1. unless ``skip_bad``, a first streaming pass runs every row through its handler without writing anything
   and raises :class:`~adrec.exceptions.RowError` at the first bad row, so nothing of a bad file is written;
2. a second streaming pass runs the handlers again and writes the records in chunks of :data:`CHUNK_RECORDS`.
   With ``skip_bad`` only this pass runs, and bad rows are counted and sampled instead of raised.

Memory is bounded by one chunk plus the set of entity ids (users, ads, campaigns, advertisers) already written
in this run, which the handlers use to write each entity once; it grows with the number of distinct entities,
never with the number of rows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from adrec.data.records import CtrExample
from adrec.data.schema import Ad, Advertiser, Campaign, EventBatch, EventType, PricingModel, User
from adrec.exceptions import ImportFormatError, RowError, ValidationError
from adrec.progress import Bars

__all__ = [
    "CHUNK_RECORDS",
    "MAX_ERROR_SAMPLES",
    "Chunk",
    "FileReport",
    "ImportReport",
    "Imported",
    "Importer",
    "Plan",
    "RecordSink",
    "RowHandler",
    "TextFile",
    "dataset_market",
    "execute",
    "input_files",
    "parse_datetime",
    "parse_flag",
    "parse_float",
    "parse_id",
    "parse_int",
    "parse_text",
    "read_into_memory",
    "require_dir",
    "require_file",
]

CHUNK_RECORDS = 20_000
"""Records buffered before a write to the store: a chunk is written once it holds this many, so it never holds
more than this plus one row's records."""

MAX_ERROR_SAMPLES = 10
"""Error messages kept per file when ``skip_bad`` is on; the rest are only counted."""

# Lines between two progress-bar updates: updating per line would cost more than parsing it.
_PROGRESS_EVERY = 2_000


# -- reports -------------------------------------------------------------------------------------------------
@dataclass
class FileReport:
    """What importing one file did.

    Attributes
    ----------
    path
        The file.
    rows_read
        Data rows seen (header and blank lines are not rows).
    rows_imported
        Rows whose records were written.
    bad_rows
        Malformed rows skipped (only non-zero with ``skip_bad``).
    events
        Events from this file newly stored (not counting those already stored).
    error_samples
        The first :data:`MAX_ERROR_SAMPLES` error messages, each ``file:line: field: problem``.
    """

    path: Path
    rows_read: int = 0
    rows_imported: int = 0
    bad_rows: int = 0
    events: int = 0
    error_samples: list[str] = field(default_factory=list)


@dataclass
class ImportReport:
    """What :func:`~adrec.data.importers.run_import` did: one :class:`FileReport` per file, and record totals.

    Entity totals count records written (an upsert of an existing id counts too). ``events`` counts events
    newly stored; ``duplicate_events`` those skipped because their ``event_id`` was already stored (re-import)
    or repeated in the file.
    """

    format: str
    path: Path
    files: list[FileReport] = field(default_factory=list)
    advertisers: int = 0
    campaigns: int = 0
    users: int = 0
    ads: int = 0
    events: int = 0
    duplicate_events: int = 0
    ctr_examples: int = 0

    @property
    def rows_read(self) -> int:
        return sum(f.rows_read for f in self.files)

    @property
    def rows_imported(self) -> int:
        return sum(f.rows_imported for f in self.files)

    @property
    def bad_rows(self) -> int:
        return sum(f.bad_rows for f in self.files)

    def summary(self) -> str:
        """A few human-readable lines: per-file row counts, error samples, then the record totals."""
        lines = [f"{self.format} import from {self.path}"]
        for f in self.files:
            counts = f"{f.rows_read:,} rows read, {f.rows_imported:,} imported, {f.bad_rows:,} bad"
            lines.append(f"  {f.path.name}: {counts}")
            lines.extend(f"    {msg}" for msg in f.error_samples)
        lines.append(
            f"  written: {self.users:,} users, {self.advertisers:,} advertisers, "
            f"{self.campaigns:,} campaigns, {self.ads:,} ads, {self.events:,} events "
            f"({self.duplicate_events:,} already stored), "
            f"{self.ctr_examples:,} CTR examples"
        )
        return "\n".join(lines)


# -- field parsers -------------------------------------------------------------------------------------------
# Each raises ValidationError(field, problem); the runner turns that into a RowError with file and line.
def parse_int(text: str, name: str, *, lo: int | None = None, hi: int | None = None) -> int:
    """An integer written in decimal, optionally within ``[lo, hi]``."""
    try:
        value = int(text)
    except ValueError:
        raise ValidationError(name, f"expected an integer, got {text!r}") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValidationError(name, f"{value} is outside [{'' if lo is None else lo}, {'' if hi is None else hi}]")
    return value


def parse_float(
    text: str, name: str, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False
) -> float:
    """A finite number, optionally within ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``)."""
    try:
        value = float(text)
    except ValueError:
        raise ValidationError(name, f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ValidationError(name, f"must be finite, got {text!r}")
    if (lo is not None and (value <= lo if lo_open else value < lo)) or (hi is not None and value > hi):
        bounds = f"{'(' if lo_open else '['}{'' if lo is None else lo}, {'' if hi is None else hi}]"
        raise ValidationError(name, f"{value} is outside {bounds}")
    return value


def parse_flag(text: str, name: str) -> bool:
    """A 0/1 flag."""
    if text == "1":
        return True
    if text == "0":
        return False
    raise ValidationError(name, f"expected 0 or 1, got {text!r}")


_ID_PIECE = re.compile(r"[^\s\x00]{1,100}")


def parse_id(text: str, name: str) -> str:
    """An identifier from the file: 1-100 characters, no whitespace (it becomes part of adrec ids)."""
    if not _ID_PIECE.fullmatch(text):
        raise ValidationError(name, f"expected an id of 1-100 characters without spaces, got {text!r}")
    return text


def parse_text(text: str, name: str) -> str:
    """A non-empty value (surrounding spaces removed)."""
    value = text.strip()
    if not value:
        raise ValidationError(name, "must not be empty")
    return value


def parse_datetime(text: str, name: str) -> float:
    """An ISO-8601 date-time (naive means UTC) as seconds since the epoch."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(name, f"expected an ISO date-time like 2019-11-24 00:03:13+00:00, got {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


# -- what a format module hands the runner -------------------------------------------------------------------
class Chunk:
    """Records produced by rows and not yet written, plus the entity ids already produced in this pass.

    Row handlers append to the public lists and call :meth:`event`; they call :meth:`first` before building an
    entity that many rows mention (a user, an ad) so it is built and written once. When a handler raises, the
    runner undoes everything that row appended, so a handler may validate as it goes.

    Parameters
    ----------
    seen
        Keys of entities already produced; shared by every file of a run in the writing pass.
    """

    def __init__(self, seen: set[str]) -> None:
        self.advertisers: list[Advertiser] = []
        self.campaigns: list[Campaign] = []
        self.users: list[User] = []
        self.ads: list[Ad] = []
        self.ctr_examples: list[CtrExample] = []
        # One tuple per event, in EventBatch column order without cost and request_id: one append per event
        # is the cheapest way to buffer millions of them.
        self._events: list[tuple[str, int, str, str, float, str | None, float, float]] = []
        self._seen = seen
        self._new_keys: list[str] = []

    def first(self, key: str) -> bool:
        """True the first time ``key`` (e.g. ``"user:ml-100k:1"``) is offered in this pass; remembers it."""
        if key in self._seen:
            return False
        self._seen.add(key)
        self._new_keys.append(key)
        return True

    def event(
        self,
        event_id: str,
        type: EventType,
        user_id: str,
        ad_id: str,
        ts: float,
        *,
        placement: str | None = None,
        value: float | None = None,
        propensity: float | None = None,
    ) -> None:
        """Buffer one event (a tuple, not an :class:`~adrec.data.schema.Event`: millions are imported)."""
        self._events.append(
            (
                event_id,
                type.value,
                user_id,
                ad_id,
                ts,
                placement,
                math.nan if value is None else value,
                math.nan if propensity is None else propensity,
            )
        )

    def _buffers(self) -> tuple[list[Any], ...]:
        return (self.advertisers, self.campaigns, self.users, self.ads, self.ctr_examples, self._events)

    def mark(self) -> tuple[int, int, int, int, int, int]:
        """Start a row: how many records of each kind are buffered, for :meth:`rollback`."""
        if self._new_keys:
            self._new_keys.clear()
        return (
            len(self.advertisers),
            len(self.campaigns),
            len(self.users),
            len(self.ads),
            len(self.ctr_examples),
            len(self._events),
        )

    def rollback(self, mark: tuple[int, int, int, int, int, int]) -> None:
        """Forget what the current row appended (records and first-seen keys)."""
        for records, n in zip(self._buffers(), mark, strict=True):
            del records[n:]
        for key in self._new_keys:
            self._seen.discard(key)
        self._new_keys.clear()

    def __len__(self) -> int:
        return sum(len(records) for records in self._buffers())

    def clear(self) -> None:
        """Empty the buffers once written (or checked); the first-seen keys stay."""
        for records in self._buffers():
            records.clear()
        self._new_keys.clear()

    def event_batch(self) -> tuple[EventBatch, int]:
        """The buffered events as a batch without repeated ids (first kept), and the number dropped."""
        events = self._events
        if not events:
            return EventBatch.from_events([]), 0
        ids = [e[0] for e in events]
        repeated = 0
        if len(set(ids)) != len(ids):
            firsts: dict[str, tuple[str, int, str, str, float, str | None, float, float]] = {}
            for event in events:
                firsts.setdefault(event[0], event)
            repeated = len(events) - len(firsts)
            events = list(firsts.values())
            ids = [e[0] for e in events]
        columns = list(zip(*events, strict=True))
        batch = EventBatch(
            event_id=np.array(ids, dtype=object),
            type=np.array(columns[1], dtype=np.int8),
            user_id=np.array(columns[2], dtype=object),
            ad_id=np.array(columns[3], dtype=object),
            ts=np.array(columns[4], dtype=np.float64),
            placement=np.array(columns[5], dtype=object),
            value=np.array(columns[6], dtype=np.float64),
            propensity=np.array(columns[7], dtype=np.float64),
        )
        return batch, repeated


RowHandler = Callable[[list[str], int, Chunk], None]
"""``handle(fields, line, chunk)`` turns the fields of line number ``line`` (1-based, as in an editor) into
records in the chunk; it raises ValidationError naming the field."""


@dataclass(frozen=True)
class TextFile:
    """One delimited text file to import, and how to read it.

    Parameters
    ----------
    path
        The file.
    handle
        The row handler.
    delimiter
        Field separator; ``None`` splits on runs of whitespace. Quoted fields are not supported: none of the
        supported formats quotes.
    encoding
        Text encoding of the file.
    header
        Column names the first line must start with (compared after stripping spaces); ``None`` when the file
        has no header line.
    n_fields
        Exact number of fields per row; ``None`` for any number (at least one). With a header, the number of
        header fields.
    """

    path: Path
    handle: RowHandler
    delimiter: str | None = ","
    encoding: str = "utf-8"
    header: tuple[str, ...] | None = None
    n_fields: int | None = None


@dataclass(frozen=True)
class Plan:
    """What to import: fixed records written before the first file's rows, then the files in order."""

    files: Sequence[TextFile]
    advertisers: Sequence[Advertiser] = ()
    campaigns: Sequence[Campaign] = ()


@dataclass(frozen=True)
class Importer:
    """A registered format: its name, a one-line description, what the path must be, and its planner.

    ``plan(path)`` checks that the expected files are there (raising ImportFormatError otherwise) and returns
    the :class:`Plan`; it reads at most a file's first line.
    """

    name: str
    description: str
    expects: str
    plan: Callable[[Path], Plan]


# -- path helpers --------------------------------------------------------------------------------------------
def require_dir(path: Path, expects: str) -> Path:
    """``path`` if it is a folder, else ImportFormatError saying what was expected."""
    if not path.is_dir():
        raise ImportFormatError(f"{path} is not a folder; expected {expects}")
    return path


def require_file(folder: Path, name: str, expects: str) -> Path:
    """``folder / name`` if it is a file, else ImportFormatError naming it and what was expected."""
    path = folder / name
    if not path.is_file():
        raise ImportFormatError(f"{path} is missing; expected {expects}")
    return path


def input_files(path: Path, patterns: Sequence[str], expects: str) -> list[Path]:
    """``[path]`` for a file; for a folder, the files in it matching any of ``patterns``, sorted by name."""
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted({p for pattern in patterns for p in path.glob(pattern) if p.is_file()})
        if found:
            return found
        raise ImportFormatError(f"{path} holds no {' or '.join(patterns)} file; expected {expects}")
    raise ImportFormatError(f"{path} does not exist; expected {expects}")


def dataset_market(source: str, name: str) -> tuple[Advertiser, Campaign]:
    """The stand-in advertiser and campaign (both with id ``source``, CPC, bid 1.0) owning a dataset's items.

    Datasets of items without advertisers (movies, locations, artists) still need an owner for their ads.
    """
    advertiser = Advertiser(advertiser_id=source, name=name)
    campaign = Campaign(campaign_id=source, advertiser_id=source, name=name, pricing_model=PricingModel.CPC, bid=1.0)
    return advertiser, campaign


# -- the runner ----------------------------------------------------------------------------------------------
class Appended(Protocol):
    """What appending events reports (a store's :class:`~adrec.store.base.IngestResult`)."""

    @property
    def inserted(self) -> int: ...
    @property
    def duplicates(self) -> int: ...


class RecordSink(Protocol):
    """Where an import writes: the writing half of the :class:`~adrec.store.base.Store` protocol, which every store
    implements. Declared here so that the importers, below the store, need nothing of it."""

    def upsert_advertisers(self, advertisers: Iterable[Advertiser]) -> int: ...
    def upsert_campaigns(self, campaigns: Iterable[Campaign]) -> int: ...
    def upsert_ads(self, ads: Iterable[Ad]) -> int: ...
    def upsert_users(self, users: Iterable[User]) -> int: ...
    def append_events(self, events: EventBatch) -> Appended: ...
    def append_ctr_examples(self, examples: Sequence[CtrExample]) -> int: ...


class _Writer:
    """Writes chunks to the store in dependency order and adds what was written to the report."""

    def __init__(self, store: RecordSink, report: ImportReport) -> None:
        self.store = store
        self.report = report

    def write(self, chunk: Chunk, file: FileReport) -> None:
        r, s = self.report, self.store
        if chunk.advertisers:
            r.advertisers += s.upsert_advertisers(chunk.advertisers)
        if chunk.campaigns:
            r.campaigns += s.upsert_campaigns(chunk.campaigns)
        if chunk.ads:
            r.ads += s.upsert_ads(chunk.ads)
        if chunk.users:
            r.users += s.upsert_users(chunk.users)
        batch, repeated = chunk.event_batch()
        if len(batch):
            result = s.append_events(batch)
            r.events += result.inserted
            file.events += result.inserted
            r.duplicate_events += result.duplicates + repeated
        if chunk.ctr_examples:
            r.ctr_examples += s.append_ctr_examples(chunk.ctr_examples)
        chunk.clear()


def _split(text: str, delimiter: str | None) -> list[str]:
    return text.split(delimiter) if delimiter is not None else text.split()


def _header_fields(file: TextFile, header: tuple[str, ...], first_line: bytes | None) -> int:
    """Check that ``first_line`` starts with the column names ``header``; return its number of fields."""
    expected = list(header)
    if first_line is None:
        raise ImportFormatError(f"{file.path} is empty; expected a header line starting {','.join(expected)}")
    try:
        names = [n.strip() for n in _split(first_line.rstrip(b"\r\n").decode(file.encoding), file.delimiter)]
    except UnicodeDecodeError:
        raise ImportFormatError(f"{file.path}:1: header is not {file.encoding} text") from None
    if names[: len(expected)] != expected:
        raise ImportFormatError(
            f"{file.path}:1: header {names[: len(expected)]} does not match; expected columns {expected} "
            "first (is this the right file for the format?)"
        )
    return len(names)


def _scan(
    file: TextFile,
    chunk: Chunk,
    writer: _Writer | None,
    *,
    skip_bad: bool,
    advance: Callable[[int], None],
) -> FileReport:
    """One streaming pass over ``file``: handle every row; write chunks when ``writer`` is given.

    Raises RowError at the first bad row unless ``skip_bad``.
    """
    report = FileReport(path=file.path)
    n_fields = file.n_fields
    delimiter, encoding, handle = file.delimiter, file.encoding, file.handle
    with file.path.open("rb") as stream:
        lines: Iterator[bytes] = iter(stream)
        line_no = 0
        unreported = 0
        if file.header is not None:
            first = next(lines, None)
            line_no = 1
            header_fields = _header_fields(file, file.header, first)
            n_fields = n_fields if n_fields is not None else header_fields
            advance(len(first or b""))
        for raw in lines:
            line_no += 1
            unreported += len(raw)
            if line_no % _PROGRESS_EVERY == 0:
                advance(unreported)
                unreported = 0
            if not raw.strip():
                continue
            mark = chunk.mark()
            if sum(mark) >= CHUNK_RECORDS:
                if writer is not None:
                    writer.write(chunk, report)
                else:
                    chunk.clear()
                mark = chunk.mark()
            try:
                fields = _split(raw.rstrip(b"\r\n").decode(encoding), delimiter)
                if n_fields is not None and len(fields) != n_fields:
                    raise ValidationError(
                        "row",
                        f"has {len(fields)} fields; expected {n_fields} separated by {delimiter or ' '!r}",
                    )
                handle(fields, line_no, chunk)
            except UnicodeDecodeError as err:
                chunk.rollback(mark)
                error = RowError(str(file.path), line_no, "row", f"is not {encoding} text ({err.reason})")
            except ValidationError as err:
                chunk.rollback(mark)
                error = RowError(str(file.path), line_no, err.field, err.message)
            else:
                report.rows_read += 1
                report.rows_imported += 1
                continue
            if not skip_bad:
                raise error
            report.rows_read += 1
            report.bad_rows += 1
            if len(report.error_samples) < MAX_ERROR_SAMPLES:
                report.error_samples.append(str(error))
        advance(unreported)
    if writer is not None:
        writer.write(chunk, report)
    return report


def execute(importer: Importer, path: Path, store: RecordSink, *, skip_bad: bool, progress: bool) -> ImportReport:
    """Run ``importer`` on ``path`` into ``store``, file by file (see the module docstring)."""
    if not path.exists():
        raise ImportFormatError(f"{path} does not exist; the {importer.name} importer expects {importer.expects}")
    plan = importer.plan(path)
    report = ImportReport(format=importer.name, path=path)
    writer = _Writer(store, report)
    seen: set[str] = set()
    fixed_written = False
    with Bars(progress, unit="bytes") as bar:
        for file in plan.files:
            size = file.path.stat().st_size
            if not skip_bad:
                try:
                    _scan(
                        file,
                        Chunk(set()),
                        None,
                        skip_bad=False,
                        advance=bar.task(f"check {file.path.name}", size),
                    )
                except RowError as err:
                    done = ", ".join(f.path.name for f in report.files) or "none"
                    err.add_note(f"nothing from {file.path.name} was written; files imported before it: {done}")
                    raise
            chunk = Chunk(seen)
            if not fixed_written:
                chunk.advertisers.extend(plan.advertisers)
                chunk.campaigns.extend(plan.campaigns)
                fixed_written = True
            report.files.append(
                _scan(file, chunk, writer, skip_bad=skip_bad, advance=bar.task(f"import {file.path.name}", size))
            )
    return report


# -- reading a log into memory (click models, off-policy evaluation) ------------------------------------------------
@dataclass(frozen=True)
class Imported:
    """What an import of a log wrote, kept in memory: its users, campaigns and ads by id, and one entry per logged
    impression in file order: event id, time, user, ad, placement, the logging policy's propensity (NaN where none
    is logged) and ``click``, 1.0 where a click of that impression was logged. A click names its impression by
    the importers' id convention: its event id with the segment ``clk`` in place of ``imp``."""

    users: dict[str, User]
    campaigns: dict[str, Campaign]
    ads: dict[str, Ad]
    event_id: npt.NDArray[np.object_]
    ts: npt.NDArray[np.float64]
    user_id: npt.NDArray[np.object_]
    ad_id: npt.NDArray[np.object_]
    placement: npt.NDArray[np.object_]
    propensity: npt.NDArray[np.float64]
    click: npt.NDArray[np.float64]


@dataclass(frozen=True)
class _Appended:
    inserted: int
    duplicates: int = 0


class _Memory:
    """The import sink that keeps what an import writes in memory."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.campaigns: dict[str, Campaign] = {}
        self.ads: dict[str, Ad] = {}
        self.batches: list[EventBatch] = []
        self._seen: set[str] = set()

    def upsert_advertisers(self, advertisers: Iterable[Advertiser]) -> int:
        return len(list(advertisers))

    def upsert_campaigns(self, campaigns: Iterable[Campaign]) -> int:
        got = {c.campaign_id: c for c in campaigns}
        self.campaigns.update(got)
        return len(got)

    def upsert_ads(self, ads: Iterable[Ad]) -> int:
        got = {a.ad_id: a for a in ads}
        self.ads.update(got)
        return len(got)

    def upsert_users(self, users: Iterable[User]) -> int:
        got = {u.user_id: u for u in users}
        self.users.update(got)
        return len(got)

    def append_events(self, events: EventBatch) -> _Appended:
        """Keeps each event id once, as a store does (a repeat in a later chunk is a duplicate, not a second
        impression)."""
        new = np.array([e not in self._seen for e in events.event_id.tolist()], dtype=bool)
        kept = events.take(np.flatnonzero(new)) if not new.all() else events
        self._seen.update(kept.event_id.tolist())
        self.batches.append(kept)
        return _Appended(len(kept.event_id), int((~new).sum()))

    def append_ctr_examples(self, examples: Sequence[CtrExample]) -> int:
        raise ValidationError("--dataset", "this import wrote feature rows, not a log of impressions")


def read_into_memory(importer: Importer, path: Path) -> Imported:
    """Import ``path`` with ``importer`` (every row checked first: a bad row gets the error ``adrec import`` gives,
    naming its file, line and column) into memory instead of a store (see :class:`Imported`)."""
    sink = _Memory()
    execute(importer, path, sink, skip_bad=False, progress=False)
    if not sink.batches:
        raise ValidationError("--dataset", f"{path} holds no logged impressions")
    ids = np.concatenate([b.event_id for b in sink.batches]).astype(object)
    kind = np.concatenate([b.type for b in sink.batches])
    imp = kind == int(EventType.IMPRESSION)
    clicked = {":".join("imp" if part == "clk" else part for part in str(e).split(":")) for e in ids[~imp].tolist()}

    def column(name: str) -> npt.NDArray[Any]:
        values: npt.NDArray[Any] = np.concatenate([getattr(b, name) for b in sink.batches])[imp]
        return values

    return Imported(
        users=sink.users,
        campaigns=sink.campaigns,
        ads=sink.ads,
        event_id=ids[imp],
        ts=column("ts").astype(np.float64),
        user_id=column("user_id").astype(object),
        ad_id=column("ad_id").astype(object),
        placement=column("placement").astype(object),
        propensity=column("propensity").astype(np.float64),
        click=np.array([e in clicked for e in ids[imp].tolist()], dtype=np.float64),
    )
