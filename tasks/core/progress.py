"""Progress of long runs, decoupled from how it is shown.

Stages report to whatever reporter the process installed: the CLI installs a rich
progress bar; a run started from the Prefect UI has none and logs a line per stage
instead. Tasks run in threads of the flow's process, so one process-wide reporter sees
them all; on a Dask or Ray cluster (``task_runner``) the flow's process counts whole
shards as they come back (and their requests and cost, from the shard's calls), and
the workers' own counts go nowhere.

Besides rows done, reporters may hear of rows kept (``kept``: a shard's kept rows as it
finishes) and of money spent (``spent``: each LLM answer sent for, as it arrives). A
:class:`Tally` keeps all of it and derives what a person waiting wants to read: the
rate, the time left, what was kept and what was spent so far.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
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


def kept(stage: str, n: int) -> None:
    """Tell the current reporter that ``stage`` kept ``n`` more rows (a shard finished)."""
    told = getattr(current(), "kept", None)
    if told is not None and n:
        told(stage, n)


def spent(usd: float) -> None:
    """Tell the current reporter that an LLM request was answered (not from the journal)
    for ``usd`` (0 for the embedded model or an unpriced one: still a request sent)."""
    told = getattr(current(), "spent", None)
    if told is not None:
        told(usd)


# --- what a person waiting reads --------------------------------------------------------


@dataclass
class StageCount:
    """One stage's progress: rows done of those known so far, rows kept, since when."""

    total: int = 0
    done: int = 0
    kept: int = 0
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None

    def elapsed_s(self, now: float | None = None) -> float:
        return (self.ended or now or time.monotonic()) - self.started

    def rate(self, now: float | None = None) -> float | None:
        """Rows done per second since the stage started (None before any row)."""
        elapsed = self.elapsed_s(now)
        return self.done / elapsed if self.done and elapsed > 0 else None

    def eta_s(self, now: float | None = None) -> float | None:
        """Seconds left at the rate so far, for the rows known so far (a chained stage
        learns more as the stage before it keeps rows); None while there is no rate."""
        if self.ended is not None:
            return 0.0
        rate = self.rate(now)
        if rate is None or self.total <= 0:
            return None
        return max(0, self.total - self.done) / rate


def duration(seconds: float | None) -> str:
    """``75`` → ``"1m15s"``, ``3725`` → ``"1h02m"``; ``None`` → ``"?"``."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class Tally:
    """Every stage's counts, the money spent, and lines that say them. Thread-safe:
    stages count from task threads and LLM answers from the client's loop thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stages: dict[str, StageCount] = {}
        self.cost_usd = 0.0
        self.requests = 0  # answers sent for (journal hits excluded)
        self.started = time.monotonic()
        self.changed = 0  # bumped on every event, so a writer can tell nothing moved

    def start(self, stage: str, total: int) -> None:
        with self._lock:
            self.stages[stage] = StageCount(total=total)
            self.changed += 1

    def extend(self, stage: str, n: int) -> None:
        with self._lock:
            self.stages.setdefault(stage, StageCount()).total += n
            self.changed += 1

    def advance(self, stage: str, n: int = 1) -> None:
        with self._lock:
            self.stages.setdefault(stage, StageCount()).done += n
            self.changed += 1

    def kept(self, stage: str, n: int) -> None:
        with self._lock:
            self.stages.setdefault(stage, StageCount()).kept += n
            self.changed += 1

    def spent(self, usd: float) -> None:
        with self._lock:
            self.cost_usd += usd
            self.requests += 1
            self.changed += 1

    def finish(self, stage: str) -> None:
        with self._lock:
            count = self.stages.setdefault(stage, StageCount())
            count.ended = time.monotonic()
            count.total = max(count.total, count.done)
            self.changed += 1

    def stage(self, stage: str) -> StageCount:
        with self._lock:
            count = self.stages.get(stage) or StageCount()
            return StageCount(**vars(count))

    def kept_so_far(self) -> int:
        """Rows kept by the last stage that has kept or finished anything: what the run
        would publish if it ended now."""
        with self._lock:
            for count in reversed(list(self.stages.values())):
                if count.kept or count.ended is not None:
                    return count.kept
        return 0

    def stage_line(self, stage: str, now: float | None = None) -> str:
        """``12/40 done · 0.8/s · ETA 35s · kept 9``."""
        c = self.stage(stage)
        rate = c.rate(now)
        parts = [f"{c.done}/{c.total} done"]
        parts.append(f"{rate:.2f}/s" if rate is not None else "-/s")
        if c.ended is None:
            parts.append(f"ETA {duration(c.eta_s(now))}")
        parts.append(f"kept {c.kept}")
        return " · ".join(parts)

    def run_line(self, now: float | None = None) -> str:
        """``kept 9 so far · $0.0123 spent (42 requests) · 1m05s elapsed``."""
        now = now or time.monotonic()
        return (
            f"kept {self.kept_so_far()} so far · ${self.cost_usd:.4f} spent "
            f"({self.requests} request{'' if self.requests == 1 else 's'}) · "
            f"{duration(now - self.started)} elapsed"
        )

    def snapshot(self) -> dict[str, object]:
        """The numbers behind the lines, for a progress artifact or a JSON log."""
        now = time.monotonic()
        with self._lock:
            stages = {name: StageCount(**vars(c)) for name, c in self.stages.items()}
        done = sum(c.done for c in stages.values())
        total = sum(max(c.total, c.done) for c in stages.values())
        return {
            "stages": [
                {
                    "stage": name,
                    "done": c.done,
                    "total": c.total,
                    "kept": c.kept,
                    "rate_per_s": c.rate(now),
                    "eta_s": c.eta_s(now),
                    "finished": c.ended is not None,
                }
                for name, c in stages.items()
            ],
            "fraction_done": done / total if total else 0.0,
            "kept_so_far": self.kept_so_far(),
            "cost_usd": self.cost_usd,
            "requests": self.requests,
            "elapsed_s": now - self.started,
        }


class Fanout:
    """Several reporters as one: the CLI's bar and a run's live artifact both hear."""

    def __init__(self, *reporters: object) -> None:
        self.reporters = reporters

    def _each(self, method: str, *args: object) -> None:
        for reporter in self.reporters:
            call = getattr(reporter, method, None)
            if call is not None:
                call(*args)

    def start(self, stage: str, total: int) -> None:
        self._each("start", stage, total)

    def extend(self, stage: str, n: int) -> None:
        self._each("extend", stage, n)

    def advance(self, stage: str, n: int = 1) -> None:
        self._each("advance", stage, n)

    def kept(self, stage: str, n: int) -> None:
        self._each("kept", stage, n)

    def spent(self, usd: float) -> None:
        self._each("spent", usd)

    def finish(self, stage: str) -> None:
        self._each("finish", stage)
