"""Progress of long runs, decoupled from how it is shown.

Stages report to whatever reporter the process installed: the CLI installs a rich
progress bar; a run started from the Prefect UI has none and logs a line per stage
instead. Tasks run in threads of the flow's process, so one process-wide reporter sees
them all; on a Dask or Ray cluster (``task_runner``) the flow's process counts whole
shards as they come back, and the workers' own counts go nowhere.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

log = logging.getLogger("winnow")


class Reporter(Protocol):
    def start(self, stage: str, total: int) -> None: ...
    def extend(self, stage: str, n: int) -> None: ...
    def advance(self, stage: str, n: int = 1) -> None: ...
    def finish(self, stage: str) -> None: ...


class LogReporter:
    """The default: a log line when a stage starts and ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done: dict[str, int] = {}
        self._total: dict[str, int] = {}

    def start(self, stage: str, total: int) -> None:
        with self._lock:
            self._done[stage] = 0
            self._total[stage] = total
        log.info("stage %s: %d to do", stage, total)

    def extend(self, stage: str, n: int) -> None:
        """``n`` more to do (a chained stage learns its work as the one before keeps)."""
        with self._lock:
            self._total[stage] = self._total.get(stage, 0) + n

    def advance(self, stage: str, n: int = 1) -> None:
        with self._lock:
            self._done[stage] = self._done.get(stage, 0) + n

    def finish(self, stage: str) -> None:
        log.info("stage %s: done (%d)", stage, self._done.get(stage, 0))


_reporter: Reporter = LogReporter()


def install(reporter: Reporter) -> Reporter:
    """Install a reporter for this process; returns the previous one."""
    global _reporter
    previous, _reporter = _reporter, reporter
    return previous


def current() -> Reporter:
    return _reporter


def extend(stage: str, n: int) -> None:
    """Tell the current reporter that ``stage`` has ``n`` more to do (reporters written
    before chained stages have no ``extend``: they are told nothing)."""
    more = getattr(current(), "extend", None)
    if more is not None:
        more(stage, n)
