"""Inside a flow, a stage runs a bounded window of shards at once (memory stays flat with
the run's size), still in parallel, and returns the outputs in shard order."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from pydantic import BaseModel

from tasks.pipeline.runner import run_stage, write_input_shards
from tasks.pipeline.stage import RunInfo, Stage, StageContext, StageResult


class Pause(BaseModel):
    seconds: float


class Gauge:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0


GAUGE = Gauge()


def slow_copy(rows: list[dict[str, Any]], config: Pause, ctx: StageContext) -> StageResult:
    with GAUGE.lock:
        GAUGE.now += 1
        GAUGE.peak = max(GAUGE.peak, GAUGE.now)
    time.sleep(config.seconds)
    with GAUGE.lock:
        GAUGE.now -= 1
    return StageResult(kept=list(rows))


SLOW_COPY = Stage("slow_copy", slow_copy)


def test_shards_in_flight_are_bounded(monkeypatch: pytest.MonkeyPatch, prefect_harness) -> None:
    from prefect import flow

    monkeypatch.setenv("WINNOW_SHARDS_IN_FLIGHT", "3")
    shards = write_input_shards([{"id": f"r{i}", "n": i} for i in range(24)], 2, "window")

    @flow
    def twelve_shards() -> list[int]:
        output = run_stage(SLOW_COPY, shards, Pause(seconds=0.3), RunInfo(run_id="w", recipe="t"))
        return [row["n"] for row in output.kept_rows()]

    assert twelve_shards() == list(range(24))
    assert 2 <= GAUGE.peak <= 3
