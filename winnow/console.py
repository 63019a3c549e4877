"""Terminal output shared by commands: errors, a live progress bar, the funnel table."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from tasks.core import progress

err = Console(stderr=True)
out = Console()


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a clear error and return the Exit to raise."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


class RateColumn(ProgressColumn):
    """Rows per second of a stage since it started."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-/s" if speed is None else f"{speed:.2f}/s", style="progress.data.speed")


class EtaColumn(ProgressColumn):
    """Time left at the rate so far (for the rows known so far); nothing once done."""

    def render(self, task: Task) -> Text:
        if task.finished:
            return Text("")
        left = task.time_remaining
        return Text(f"ETA {progress.duration(left)}", style="progress.remaining")


class RunProgress(Progress):
    """The stages' bars, then one line for the run: kept and spent so far."""

    def __init__(self, tally: progress.Tally, *columns: Any, **kwargs: Any) -> None:
        self.tally = tally  # before the base's __init__, which renders once
        super().__init__(*columns, **kwargs)

    def get_renderables(self) -> Iterator[Any]:
        yield from super().get_renderables()
        yield Text(self.tally.run_line(), style="bold")


class RichReporter:
    """Stage progress as rich bars on stderr: one bar per stage with its rate, time left
    and rows kept, and a line for the run with what it kept and spent so far."""

    def __init__(self, bar: Progress, tally: progress.Tally | None = None) -> None:
        self._bar = bar
        self.tally = tally or progress.Tally()
        self._ids: dict[str, Any] = {}
        self._lock = threading.Lock()

    def start(self, stage: str, total: int) -> None:
        self.tally.start(stage, total)
        with self._lock:
            self._ids[stage] = self._bar.add_task(stage, total=total, kept=0)

    def extend(self, stage: str, n: int) -> None:
        self.tally.extend(stage, n)
        with self._lock:
            task = self._ids.get(stage)
        if task is not None:
            self._bar.update(task, total=(self._bar.tasks[task].total or 0) + n)

    def advance(self, stage: str, n: int = 1) -> None:
        self.tally.advance(stage, n)
        with self._lock:
            task = self._ids.get(stage)
        if task is not None:
            self._bar.advance(task, n)

    def kept(self, stage: str, n: int) -> None:
        self.tally.kept(stage, n)
        with self._lock:
            task = self._ids.get(stage)
        if task is not None:
            self._bar.update(task, kept=self.tally.stage(stage).kept)

    def spent(self, usd: float) -> None:
        self.tally.spent(usd)  # shown by the run's line at the next refresh

    def finish(self, stage: str) -> None:
        self.tally.finish(stage)
        with self._lock:
            task = self._ids.get(stage)
        if task is not None:
            self._bar.update(task, completed=self._bar.tasks[task].total)


class LineReporter:
    """Progress for logs and pipes: a line when a stage starts, one every ``every_s``
    seconds while it advances (done / known so far: a chained stage learns its work as
    the stage before it keeps rows; its rate, the time left at that rate, the rows it
    kept, and what the run kept and spent so far), and one when it ends."""

    def __init__(self, every_s: float = 30.0) -> None:
        self.tally = progress.Tally()
        self._last: dict[str, float] = {}
        self._every_s = every_s
        self._lock = threading.Lock()

    def start(self, stage: str, total: int) -> None:
        self.tally.start(stage, total)
        with self._lock:
            self._last[stage] = time.monotonic()
        told = f"{total} to do" if total else "its work comes from the stage before"
        self._line(f"[{stage}] started: {told}")

    def extend(self, stage: str, n: int) -> None:
        self.tally.extend(stage, n)

    def kept(self, stage: str, n: int) -> None:
        self.tally.kept(stage, n)

    def spent(self, usd: float) -> None:
        self.tally.spent(usd)

    def advance(self, stage: str, n: int = 1) -> None:
        self.tally.advance(stage, n)
        with self._lock:
            now = time.monotonic()
            if now - self._last.get(stage, 0.0) < self._every_s:
                return
            self._last[stage] = now
        self._line(f"[{stage}] {self.tally.stage_line(stage)} | {self.tally.run_line()}")

    def finish(self, stage: str) -> None:
        self.tally.finish(stage)
        count = self.tally.stage(stage)
        self._line(
            f"[{stage}] done ({count.done}, kept {count.kept}, "
            f"{progress.duration(count.elapsed_s())}) | {self.tally.run_line()}"
        )

    @staticmethod
    def _line(text: str) -> None:
        err.print(text, highlight=False, markup=False, soft_wrap=True)  # a line a log line


@contextmanager
def live_progress() -> Iterator[None]:
    if not sys.stderr.isatty():
        previous = progress.install(LineReporter())
        try:
            yield
        finally:
            progress.install(previous)
        return
    tally = progress.Tally()
    bar = RunProgress(
        tally,
        TextColumn("[bold]{task.description:<14}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        EtaColumn(),
        TextColumn("kept {task.fields[kept]}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    previous = progress.install(RichReporter(bar, tally))
    try:
        with bar:
            yield
    finally:
        progress.install(previous)


def funnel_table(rows: list[dict[str, Any]], title: str = "Funnel") -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("stage", "in", "out", "rejected", ""):
        table.add_column(col, justify="left" if col in ("stage", "") else "right")
    for r in rows:
        table.add_row(
            str(r["stage"]),
            str(r["n_in"]),
            str(r["n_out"]),
            str(r["n_rejected"]),
            "reused" if r.get("reused") else "",
        )
    return table


def costs_line(costs: dict[str, Any]) -> str:
    sends = costs.get("sends")
    retried = f", {sends} sends (retries included)" if sends else ""
    return (
        f"LLM calls: {costs.get('calls', 0)} ({costs.get('cached_calls', 0)} from the journal"
        f"{retried}), "
        f"tokens: {costs.get('prompt_tokens', 0)} in / {costs.get('completion_tokens', 0)} out, "
        f"cost: ${costs.get('cost_usd', 0.0):.4f}"
    )


def print_summary(summary: dict[str, Any], seconds: float) -> None:
    """What a finished recipe run reports: its funnel, its costs, what it kept and where."""
    out.print(funnel_table(summary.get("stages", []), title=f"Run {summary.get('run_id')}"))
    out.print(
        costs_line(
            {
                "calls": summary.get("llm_calls", 0),
                "cached_calls": summary.get("llm_calls_from_journal", 0),
                "sends": summary.get("llm_sends", 0),
                "prompt_tokens": summary.get("tokens", {}).get("prompt", 0),
                "completion_tokens": summary.get("tokens", {}).get("completion", 0),
                "cost_usd": summary.get("cost_usd", 0.0),
            }
        )
    )
    if "kept_needing_revision" in summary:
        out.print(
            f"fixed by revision: {summary['kept_needing_revision']} kept, "
            f"of which {summary.get('kept_with_tests_repaired', 0)} with repaired tests"
        )
    diversity = summary.get("diversity")
    if diversity:
        figures = ", ".join(
            f"{name.replace('_', ' ')} {diversity[name]}"
            for name in ("distinct_2", "spread", "near_duplicate_share")
            if diversity.get(name) is not None
        )
        out.print(f"problem diversity ({diversity.get('texts', 0)} problems): {figures}")
    out.print(
        f"kept {summary.get('kept', 0)} example(s) in {seconds:.0f} s -> {summary.get('out', '')}"
    )
