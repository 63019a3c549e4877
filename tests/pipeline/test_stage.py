"""The stage runner: shard outputs are cached by content, resumed after a crash, and every
input row ends kept or rejected."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from tasks.curation.exact import ExactDedupConfig, exact_dedup_stage
from tasks.pipeline.runner import run_global, run_shard, run_stage, write_input_shards
from tasks.pipeline.stage import RunInfo, Stage, StageContext, StageResult

RUN = RunInfo(run_id="r1", recipe="test")
CALLS: list[int] = []


class Threshold(BaseModel):
    keep_above: int


def keep_large(rows: list[dict[str, Any]], config: Threshold, ctx: StageContext) -> StageResult:
    CALLS.append(len(rows))
    out = StageResult()
    for row in rows:
        if row["n"] > config.keep_above:
            out.kept.append(row)
        else:
            out.reject(row, ctx.stage, f"n={row['n']} too small")
    return out


KEEP_LARGE = Stage("keep_large", keep_large)


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()


def rows(n: int) -> list[dict[str, Any]]:
    return [{"id": f"r{i}", "n": i} for i in range(n)]


def test_input_shards_are_content_addressed() -> None:
    a = write_input_shards(rows(10), 4, "t")
    b = write_input_shards(rows(10), 4, "t")
    assert [s.rows for s in a] == [4, 4, 2]
    assert [s.path for s in a] == [s.path for s in b]
    c = write_input_shards([{"id": "x", "n": 1}, *rows(9)], 4, "t")
    assert c[0].path != a[0].path


def test_every_row_is_kept_or_rejected_with_reason() -> None:
    shards = write_input_shards(rows(10), 3, "t")
    out = run_stage(KEEP_LARGE, shards, Threshold(keep_above=6), RUN)
    assert (out.n_in, out.n_kept, out.n_rejected) == (10, 3, 7)
    assert sorted(r["id"] for r in out.kept_rows()) == ["r7", "r8", "r9"]
    reasons = {r["record_id"]: r["reason"] for r in out.rejected_rows()}
    assert reasons["r0"] == "n=0 too small" and len(reasons) == 7


def test_rerun_reuses_finished_shards_and_config_change_reruns() -> None:
    shards = write_input_shards(rows(10), 5, "t")
    run_stage(KEEP_LARGE, shards, Threshold(keep_above=6), RUN)
    assert CALLS == [5, 5]
    again = run_stage(KEEP_LARGE, shards, Threshold(keep_above=6), RUN)
    assert CALLS == [5, 5] and again.reused
    changed = run_stage(KEEP_LARGE, shards, Threshold(keep_above=2), RUN)
    assert CALLS == [5, 5, 5, 5] and not changed.reused and changed.n_kept == 7


def test_crash_mid_shard_leaves_no_marker_and_is_redone() -> None:
    shards = write_input_shards(rows(4), 4, "t")

    def crash(rows, config, ctx):
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        run_shard(Stage("keep_large", crash), shards[0], Threshold(keep_above=0), RUN)
    out = run_shard(KEEP_LARGE, shards[0], Threshold(keep_above=0), RUN)
    assert not out.reused and out.kept.rows == 3


def test_shard_with_failed_requests_is_redone_next_time() -> None:
    shards = write_input_shards(rows(2), 2, "t")
    attempts: list[int] = []

    def flaky(rows, config, ctx):
        attempts.append(1)
        out = StageResult(kept=rows)
        out.calls.append({"key": "k", "error": "500 after retries" if len(attempts) == 1 else ""})
        return out

    stage = Stage("flaky", flaky)
    first = run_shard(stage, shards[0], Threshold(keep_above=0), RUN)
    assert not first.complete
    second = run_shard(stage, shards[0], Threshold(keep_above=0), RUN)
    assert second.complete and not second.reused and len(attempts) == 2
    third = run_shard(stage, shards[0], Threshold(keep_above=0), RUN)
    assert third.reused and len(attempts) == 2


def test_expanding_stage_accounts_units() -> None:
    def fan_out(rows, config, ctx):
        out = StageResult(n_in=len(rows) * 3)
        for row in rows:
            for i in range(3):
                cand = {"id": f"{row['id']}-{i}"}
                (out.kept.append(cand) if i else out.reject(cand, ctx.stage, "bad draw"))
        return out

    shards = write_input_shards(rows(4), 2, "t")
    out = run_stage(Stage("fan", fan_out), shards, Threshold(keep_above=0), RUN)
    assert (out.n_in, out.n_kept, out.n_rejected) == (12, 8, 4)


def test_exact_dedup_keeps_first_and_names_it() -> None:
    data = [
        {"id": "a", "text": "Hello  World"},
        {"id": "b", "text": "hello world"},
        {"id": "c", "text": "other"},
        {"id": "d", "text": "OTHER "},
    ]
    shards = write_input_shards(data, 3, "t")
    out = run_global(exact_dedup_stage(), shards, ExactDedupConfig(fields=["text"]), RUN)
    assert [r["id"] for r in out.kept_rows()] == ["a", "c"]
    assert {r["record_id"]: r["reason"] for r in out.rejected_rows()} == {
        "b": "duplicate of a",
        "d": "duplicate of c",
    }
    assert (out.n_in, out.n_kept, out.n_rejected) == (4, 2, 2)
    again = run_global(exact_dedup_stage(), shards, ExactDedupConfig(fields=["text"]), RUN)
    assert again.reused and [r["id"] for r in again.kept_rows()] == ["a", "c"]


class Recorder:
    """A progress reporter that remembers what it was told."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}
        self.done: dict[str, int] = {}

    def start(self, stage: str, total: int) -> None:
        self.totals[stage] = total

    def advance(self, stage: str, n: int = 1) -> None:
        self.done[stage] = self.done.get(stage, 0) + n

    def finish(self, stage: str) -> None:
        pass


def test_the_runner_counts_progress_a_stage_did_not() -> None:
    """Stages need not count: the runner tops each shard up to its rows, and a stage that
    counts as it goes (the LLM door does, by row) is not counted twice."""
    from tasks.core import progress

    def counts_half(rows, config, ctx):
        ctx.progress(len(rows) // 2)
        return keep_large(rows, config, ctx)

    recorder = Recorder()
    previous = progress.install(recorder)
    try:
        shards = write_input_shards(rows(10), 3, "t")
        run_stage(KEEP_LARGE, shards, Threshold(keep_above=6), RUN)
        run_stage(Stage("half", counts_half), shards, Threshold(keep_above=6), RUN)
        run_stage(KEEP_LARGE, shards, Threshold(keep_above=6), RUN)  # reused shards count too
    finally:
        progress.install(previous)
    assert recorder.totals == {"keep_large": 10, "half": 10}
    assert recorder.done == {"keep_large": 20, "half": 10}
