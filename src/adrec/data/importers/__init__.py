"""Streaming, validating importers of real datasets into a :class:`~adrec.store.base.Store`.

One module per source format; :data:`IMPORTERS` maps each format name to its :class:`Importer` (with a
one-line ``description``) and :func:`run_import` runs one::

    from adrec.data.importers import run_import
    from adrec.store import open_store

    with open_store("sqlite:///adrec.db") as store:
        report = run_import("movielens", "data/ml-100k", store)
    print(report.summary())

Every row is validated. By default the first malformed row raises :class:`~adrec.exceptions.RowError`
(``file:line: field: problem``) and nothing of that file is written (files imported before it stay
imported); with ``skip_bad=True`` bad rows are skipped, counted and sampled in the :class:`ImportReport`.
Files are streamed in chunks, so memory does not grow with their size. Each format module's docstring
documents how its rows map to records (ids, the click rule, timestamps of datasets without any).
"""

from __future__ import annotations

from pathlib import Path

from adrec.data.importers import avazu, criteo, lightgcn, movielens, obd, taobao, taobao_dmr
from adrec.data.importers.base import FileReport, Importer, ImportReport, RecordSink, execute
from adrec.exceptions import ImportFormatError

__all__ = ["IMPORTERS", "FileReport", "ImportReport", "Importer", "RecordSink", "run_import"]

IMPORTERS: dict[str, Importer] = {
    module.IMPORTER.name: module.IMPORTER for module in (movielens, lightgcn, obd, taobao, taobao_dmr, criteo, avazu)
}
"""Format name → importer; ``IMPORTERS[name].description`` is a one-line description for help texts."""


def run_import(
    format: str, path: str | Path, store: RecordSink, *, skip_bad: bool = False, progress: bool = True
) -> ImportReport:
    """Import the dataset at ``path`` in ``format`` into ``store``.

    Parameters
    ----------
    format
        A key of :data:`IMPORTERS`: ``movielens``, ``lightgcn``, ``obd``, ``taobao``, ``taobao-dmr``,
        ``criteo`` or ``avazu``.
    path
        The dataset folder or file (what each format expects is in ``IMPORTERS[format].expects``).
    store
        Where to write: a :class:`~adrec.store.base.Store` (or anything with its writing methods, a
        :class:`RecordSink`). Users, ads, campaigns and advertisers are upserted; events are idempotent by id, so
        importing the same data twice adds no events.
    skip_bad
        Skip malformed rows and report them instead of stopping at the first one.
    progress
        Show a progress bar (on standard error) per file and pass.

    Returns
    -------
    ImportReport
        Rows read / imported / bad per file, error samples, and the number of records written.

    Raises
    ------
    ImportFormatError
        ``format`` is unknown, or ``path`` or a file the format needs is missing or has the wrong header.
    RowError
        A row is malformed (only without ``skip_bad``); nothing of its file was written.
    """
    importer = IMPORTERS.get(format)
    if importer is None:
        known = ", ".join(sorted(IMPORTERS))
        raise ImportFormatError(f"unknown import format {format!r}; known formats: {known}")
    return execute(importer, Path(path).expanduser(), store, skip_bad=skip_bad, progress=progress)
