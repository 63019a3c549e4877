"""``task_runner=dask`` with no address: the run starts a temporary LocalCluster, its
shards run in the cluster's worker processes, the flow's process counts progress by
whole shards, and the cluster is gone when the run ends. (The stage lives in this small
module so the workers import nothing heavy to unpickle it.)"""

from __future__ import annotations

import os
from typing import Any

import pytest
from prefect import flow
from pydantic import BaseModel

from tasks.core import progress
from tasks.pipeline.params import RuntimeParams
from tasks.pipeline.run import Run
from tasks.pipeline.stage import Stage, StageContext, StageResult


class NoConfig(BaseModel):
    pass


def tag_pid(rows: list[dict[str, Any]], config: NoConfig, ctx: StageContext) -> StageResult:
    out = StageResult()
    for row in rows:
        ctx.progress()  # on a worker: a no-op, never a crash
        out.kept.append({**row, "pid": os.getpid()})
    return out


TAG_PID = Stage("tag_pid", tag_pid)


class Recorder:
    def __init__(self) -> None:
        self.done: dict[str, int] = {}

    def start(self, stage: str, total: int) -> None:
        self.done[stage] = 0

    def advance(self, stage: str, n: int = 1) -> None:
        self.done[stage] += n

    def finish(self, stage: str) -> None:
        pass


@flow(name="tiny-on-dask")
def tiny(params: RuntimeParams) -> dict[str, Any]:
    with Run("tiny", params.model_copy(update={"shard_size": 2})) as run:
        shards = run.inputs({"id": f"r{i}"} for i in range(6))
        out = run.stage(TAG_PID, shards, NoConfig())
        runner = run._task_runner
        cluster = getattr(runner, "_cluster", None)
    return {
        "pids": sorted({r["pid"] for r in out.kept_rows()}),
        "n_kept": out.n_kept,
        "cluster_status": str(getattr(cluster, "status", "")),
    }


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_temporary_cluster_runs_the_shards_and_goes_away(prefect_harness) -> None:
    recorder = Recorder()
    previous = progress.install(recorder)
    try:
        result = tiny(RuntimeParams(task_runner="dask", dask_workers=1))
    finally:
        progress.install(previous)
    assert result["n_kept"] == 6
    assert result["pids"] and os.getpid() not in result["pids"]  # made by worker processes
    assert recorder.done == {"tag_pid": 6}  # counted once, by the flow's process
    assert "closed" in result["cluster_status"].lower()
