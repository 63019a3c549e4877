"""Chained stages: shards go through the stages one after another without waiting for
each other, the outputs are what the stages run one by one would give, and a shard whose
rows fail a gate's row-wise check never reaches the next stage."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from pydantic import BaseModel

from tasks.gates.gx import GateFailed
from tasks.gates.suites import parse_suite
from tasks.pipeline.runner import Link, run_chain, run_stage, write_input_shards
from tasks.pipeline.stage import RunInfo, Stage, StageContext, StageResult

RUN = RunInfo(run_id="chain", recipe="t")


class NoConfig(BaseModel):
    pass


def double(rows: list[dict[str, Any]], config: NoConfig, ctx: StageContext) -> StageResult:
    out = StageResult()
    for row in rows:
        if row["n"] % 5 == 0:
            out.reject(row, ctx.stage, "a multiple of five")
        else:
            out.kept.append(dict(row, n=row["n"] * 2))
    return out


def label(rows: list[dict[str, Any]], config: NoConfig, ctx: StageContext) -> StageResult:
    return StageResult(kept=[dict(r, label=f"#{r['n']}") for r in rows])


DOUBLE, LABEL = Stage("double", double), Stage("label", label)


def rows(n: int) -> list[dict[str, Any]]:
    return [{"id": f"r{i}", "n": i} for i in range(n)]


def test_a_chain_gives_what_the_stages_one_by_one_give() -> None:
    shards = write_input_shards(rows(23), 4, "chain")
    first = run_stage(DOUBLE, shards, NoConfig(), RUN)
    second = run_stage(LABEL, first.kept, NoConfig(), RUN)
    chained = run_chain(
        [Link(stage=DOUBLE, config=NoConfig()), Link(stage=LABEL, config=NoConfig())],
        shards,
        RUN,
    )
    for alone, linked in zip([first, second], chained, strict=True):
        assert [s.kept.fingerprint for s in alone.shards] == [
            s.kept.fingerprint for s in linked.shards
        ]
        assert (alone.n_in, alone.n_kept, alone.n_rejected) == (
            linked.n_in,
            linked.n_kept,
            linked.n_rejected,
        )
    assert all(s.reused for s in chained[0].shards)  # same stage, config, input: cached


def test_a_shard_failing_a_row_wise_check_stops_the_chain_there() -> None:
    """The check (every n below 30 after doubling) fails on the shard holding 16..19:
    the label stage never sees it, nor any shard after it."""
    seen: list[int] = []

    def spy(rows: list[dict[str, Any]], config: NoConfig, ctx: StageContext) -> StageResult:
        seen.extend(r["n"] for r in rows)
        return StageResult(kept=rows)

    suite = parse_suite(
        '{"name": "chain.small", "severity": "critical", "expectations": [{"type": '
        '"expect_column_values_to_be_between", "kwargs": {"column": "n", "max_value": 30}}]}'
    )
    links = [
        Link(stage=DOUBLE, config=NoConfig(), check=suite),
        Link(stage=Stage("spy", spy), config=NoConfig()),
    ]
    with pytest.raises(GateFailed):
        run_chain(links, write_input_shards(rows(24), 4, "chain-gate"), RUN)
    assert max(seen) <= 30 and 32 not in seen


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_in_a_flow_an_early_shard_finishes_while_a_later_one_is_at_the_first_stage(
    prefect_harness,
) -> None:
    """The last shard's first stage waits until the first shard is through the second
    stage: with a barrier between stages (every shard through one stage before the next
    begins) that could never happen."""
    from prefect import flow

    first_shard_through = threading.Event()

    def first_stage(rows: list[dict[str, Any]], config: NoConfig, ctx: StageContext):
        if rows[0]["n"] == 4:
            assert first_shard_through.wait(60), "the chain waited for a whole stage"
        return StageResult(kept=rows)

    def second_stage(rows: list[dict[str, Any]], config: NoConfig, ctx: StageContext):
        if rows[0]["n"] == 0:
            first_shard_through.set()
        return StageResult(kept=rows)

    links = [
        Link(stage=Stage("first", first_stage), config=NoConfig()),
        Link(stage=Stage("second", second_stage), config=NoConfig()),
    ]

    @flow(name="chain-overlap")
    def overlap() -> int:
        outputs = run_chain(links, write_input_shards(rows(6), 2, "overlap"), RUN)
        return outputs[-1].n_kept

    assert overlap() == 6
