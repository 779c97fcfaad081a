"""A rich progress bar that costs the hot loop two integer increments per sample.

Workers only bump counters; the bar reads them when rich refreshes (4 times a second, in rich's own
thread), so a 100k-sample run pays nothing per sample for its display.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class _CounterProgress(Progress):
    def __init__(self, owner: RunProgress, *columns: Any, **kwargs: Any) -> None:
        self._owner = owner  # set first: rich may render while __init__ runs
        super().__init__(*columns, **kwargs)

    def get_renderables(self):  # called by rich's refresh thread
        self._owner.sync()
        yield from super().get_renderables()


class RunProgress:
    def __init__(self, label: str, total: int, *, enabled: bool = True, console: Console | None = None) -> None:
        self.label, self.total, self.enabled = label, total, enabled
        self.done = 0  # samples finished (cached ones included)
        self.errors = 0
        self.cached = 0
        self.fold = ""
        self._bar: _CounterProgress | None = None
        self._task_id: Any = None
        self._console = console or Console(stderr=True)

    def __enter__(self) -> RunProgress:
        if self.enabled:
            self._bar = _CounterProgress(
                self,
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[rate]}"),
                TextColumn("cached {task.fields[cached]} · [red]errors {task.fields[errors]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self._console,
                refresh_per_second=4,
            )
            self._task_id = self._bar.add_task(escape(self.label), total=self.total, cached=0, errors=0, rate="")
            self._bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self.sync()
            self._bar.stop()

    def start_fold(self, fold: str, total: int, cached: int) -> None:
        self.fold = fold
        self.cached += cached
        self.done += cached

    def advance(self, error: bool) -> None:
        self.done += 1
        self.errors += error

    def sync(self) -> None:
        if self._bar is None:
            return
        task = self._bar.tasks[0] if self._bar.tasks else None
        speed = task.speed if task is not None else None
        rate = f"{speed:,.1f}/s" if speed else ""
        self._bar.update(
            self._task_id, completed=self.done, cached=self.cached, errors=self.errors, rate=rate,
            description=escape(f"{self.label} [{self.fold}]" if self.fold else self.label),  # names are not markup
        )
