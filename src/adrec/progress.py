"""Progress bars for long jobs: one small wrapper over rich, silent when disabled (tests, ``--no-progress``).

Usage::

    with Bars(enabled=True, unit="bytes") as bars:
        advance = bars.task("u.data", total=path.stat().st_size)
        advance(4096)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal, Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

__all__ = ["Bars"]


class Bars:
    """A group of rich progress bars on standard error, or nothing at all when ``enabled`` is false.

    ``unit="bytes"`` shows sizes and transfer speed (file imports); ``unit="items"`` shows ``done/total``.
    """

    def __init__(self, enabled: bool = True, unit: Literal["bytes", "items"] = "items") -> None:
        self._progress: Progress | None = None
        if enabled:
            counters: list[ProgressColumn] = (
                [DownloadColumn(), TransferSpeedColumn()]
                if unit == "bytes"
                else [MofNCompleteColumn(), TimeElapsedColumn()]
            )
            self._progress = Progress(
                TextColumn("[bold]{task.description:<12}"),
                BarColumn(),
                *counters,
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )

    def __enter__(self) -> Self:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def task(self, description: str, total: int | None) -> Callable[[int], None]:
        """A function that advances a new bar by its argument."""
        progress = self._progress
        if progress is None:
            return lambda _n: None
        task_id = progress.add_task(description, total=total)
        return lambda n: progress.advance(task_id, n)

    @contextmanager
    def step(self, description: str) -> Iterator[None]:
        """A one-step bar, completed when the block exits without an error."""
        advance = self.task(description, 1)
        yield
        advance(1)

    def update(self, description: str) -> Callable[[str], None]:
        """A function that replaces the text of a new indeterminate line (e.g. ``loss=0.31 recall=0.12``)."""
        progress = self._progress
        if progress is None:
            return lambda _s: None
        task_id = progress.add_task(description, total=None)
        return lambda text: progress.update(task_id, description=f"{description} {text}")
