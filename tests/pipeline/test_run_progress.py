"""A run's progress hears of the money spent wherever the answers came from: in this
process the LLM client tells it as each answer arrives; on a Dask or Ray worker, out of
its sight, the run counts a shard's calls as the shard comes back (journal hits and
reused shards cost nothing now)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.core import progress
from tasks.pipeline.run import Run
from tasks.pipeline.runner import _write
from tasks.pipeline.stage import ShardOutput
from tasks.recipes.generate.recipe import GenerateParams


def shard(tmp: Path, calls: list[dict], reused: bool = False) -> ShardOutput:
    rows = [{"id": "a", "text": "x"}]
    return ShardOutput(
        stage="generate",
        key="k",
        input=_write(rows, str(tmp / "in.parquet")),
        kept=_write(rows, str(tmp / "kept.parquet")),
        rejected=_write([], str(tmp / "rejected.parquet")),
        calls=_write(calls, str(tmp / "calls.parquet")),
        reused=reused,
    )


def call(key: str, usd: float, cached: bool = False) -> dict:
    return {"key": key, "provider": "openai", "model": "m", "prompt_tokens": 10,
            "completion_tokens": 5, "cost_usd": usd, "latency_s": 0.1, "cached": cached,
            "attempts": 1, "error": "", "template": "t", "template_version": "1"}  # fmt: skip


@pytest.mark.parametrize("remote", [False, True])
def test_the_cost_of_a_workers_shard_is_counted_once(tmp_path: Path, remote: bool) -> None:
    tally = progress.Tally()
    previous = progress.install(tally)
    try:
        run = Run("generate", GenerateParams(out=str(tmp_path / "o.jsonl")))
        if remote:
            run._task_runner = object()  # stands for a started Dask or Ray task runner
        run._record_shard("generate", shard(tmp_path, [call("a", 0.25), call("b", 0.5, True)]))
        reused = tmp_path / "again"
        reused.mkdir()
        run._record_shard("generate", shard(reused, [call("c", 1.0)], reused=True))
        run.finish("completed")
    finally:
        progress.install(previous)
    # in this process the client already told the tally (not here): nothing twice
    assert (tally.cost_usd, tally.requests) == ((0.25, 1) if remote else (0.0, 0))
