"""The projection of a full run from a preview: yields carried through the funnel with
their Wilson bands, requests per row with theirs, prices per model (batch discount),
wall time from latency, concurrency and the provider's quotas, and the plain words a
3-row preview owes its reader."""

from __future__ import annotations

import pytest

from tasks.llm.prices import ModelPrice, PriceTable
from tasks.pipeline.projection import (
    CallMeasure,
    Endpoint,
    StageMeasure,
    project,
    requests_per_row,
    wilson,
)

PRICES = PriceTable({"m-gen": ModelPrice(input=1.0, output=4.0)}, batch_discount=0.5)


def call(requests: int, prompt: int, completion: int, latency: float, model: str = "m-gen"):
    return CallMeasure(
        provider="openai",
        model=model,
        requests=requests,
        prompt_tokens=prompt,
        completion_tokens=completion,
        latency_s=latency,
    )


def funnel() -> list[StageMeasure]:
    """3 problems → 2 solutions each (6 decided, 4 kept) → a judge keeping 2 of 4."""
    return [
        StageMeasure(
            stage="problems", n_in=3, n_out=3, n_rejected=0, calls=[call(3, 300, 600, 3.0)]
        ),  # fmt: skip
        StageMeasure(
            stage="solutions", n_in=3, n_out=4, n_rejected=2, calls=[call(6, 1200, 1200, 6.0)]
        ),  # fmt: skip
        StageMeasure(
            stage="judge", n_in=4, n_out=2, n_rejected=2, calls=[call(4, 2000, 40, 2.0)]
        ),  # fmt: skip
    ]


def test_wilson_says_what_three_rows_can_know() -> None:
    low, high = wilson(2, 3)
    assert low == pytest.approx(0.2077, abs=1e-3) and high == pytest.approx(0.9385, abs=1e-3)
    low, high = wilson(0, 3)  # nothing kept of 3: a 5% yield and a 50% one both fit
    assert low == 0.0 and 0.5 < high < 0.6
    low, high = wilson(50, 1000)
    assert 0.037 < low < 0.05 < high < 0.066


def test_requests_per_row_bands_the_extra_requests() -> None:
    once = requests_per_row(4, 4)  # each row asked once: at least one a row
    assert once["estimate"] == 1 and once["low"] == 1 and once["high"] > 1
    reasked = requests_per_row(6, 4)
    assert reasked["low"] > 1 and reasked["estimate"] == 1.5 and reasked["high"] > 2
    some = requests_per_row(1, 3)  # revision rounds only failing rows ask for
    assert some["low"] < 1 / 3 < some["high"]


def test_the_funnel_is_carried_through_with_its_bands() -> None:
    p = project(funnel(), 3, 300, {}, PRICES, parallel_shards=4, shard_size=16)
    problems, solutions, judge = p.stages
    assert problems.rows_in.estimate == 300 and problems.rows_out.estimate == 300
    assert solutions.fan_out == 2  # two candidates a problem: decided 6 of 3 rows
    assert solutions.rows_out.estimate == pytest.approx(300 * 2 * 4 / 6)
    assert judge.rows_in.estimate == solutions.rows_out.estimate  # fed by the stage before
    assert p.kept.estimate == pytest.approx(200.0)
    assert p.kept.low < p.kept.estimate < p.kept.high  # type: ignore[operator]
    # every stage at its low yield at once: the low kept is the product of the lows
    low_sol, _ = wilson(4, 6)
    low_judge, _ = wilson(2, 4)
    low_problems, _ = wilson(3, 3)
    assert p.kept.low == pytest.approx(300 * low_problems * 2 * low_sol * low_judge, rel=1e-4)
    # requests: 1 a problem, 2 a problem's solutions, 1 a candidate judged
    assert p.requests.estimate == pytest.approx(300 + 600 + 400)
    assert p.requests.low < p.requests.estimate < p.requests.high  # type: ignore[operator]
    # tokens go with requests
    assert p.prompt_tokens.estimate == pytest.approx(300 * 100 + 600 * 200 + 400 * 500)


def test_cost_per_model_from_the_price_table_and_the_batch_discount() -> None:
    live = project(funnel(), 3, 300, {}, PRICES)
    batch = project(funnel(), 3, 300, {}, PRICES, batch=True)
    expected = (live.prompt_tokens.estimate * 1.0 + live.completion_tokens.estimate * 4.0) / 1e6
    assert live.cost_usd.estimate == pytest.approx(expected, rel=1e-3)
    assert batch.cost_usd.estimate == pytest.approx(expected / 2, rel=1e-3)
    (model,) = batch.by_model
    assert (model.provider, model.model, model.batch) == ("openai", "m-gen", True)
    assert model.price_in_per_m == 0.5 and model.price_out_per_m == 2.0
    assert model.cost_usd.low <= model.cost_usd.estimate <= model.cost_usd.high  # type: ignore[operator]


def test_wall_time_from_latency_concurrency_and_quotas() -> None:
    one = [
        StageMeasure(stage="g", n_in=4, n_out=4, n_rejected=0, calls=[call(4, 400, 400, 8.0)])
    ]  # fmt: skip  2 s a request
    free = {("openai", "m-gen"): Endpoint(concurrency=10)}
    p = project(one, 4, 1000, free, PRICES, parallel_shards=8, shard_size=16)
    assert p.wall_s.estimate == pytest.approx(1000 * 2.0 / 10)
    # the provider said 60 requests a minute: one a second, whatever the concurrency
    quota = {("openai", "m-gen"): Endpoint(concurrency=10, requests_per_min=60)}
    p = project(one, 4, 1000, quota, PRICES, parallel_shards=8, shard_size=16)
    assert p.wall_s.estimate == pytest.approx(1000.0)
    # and 60k tokens a minute: 1000 a second, 200 tokens a request -> 200 s
    tokens = {("openai", "m-gen"): Endpoint(concurrency=1000, tokens_per_min=60_000)}
    p = project(one, 4, 1000, tokens, PRICES, parallel_shards=100, shard_size=16)
    assert p.wall_s.estimate == pytest.approx(200.0)


def test_a_stage_no_preview_row_reached_leaves_the_high_bound_open() -> None:
    measures = [
        StageMeasure(
            stage="problems", n_in=3, n_out=0, n_rejected=3, calls=[call(3, 300, 300, 3.0)]
        ),  # fmt: skip
        StageMeasure(stage="judge", n_in=0, n_out=0, n_rejected=0),
    ]
    p = project(measures, 3, 100, {}, PRICES)
    assert p.kept.estimate == 0 and p.kept.high > 0  # type: ignore[operator]
    assert p.requests.estimate == 100 and p.requests.high is None
    assert p.cost_usd.high is None and p.wall_s.high is None
    text = " ".join(p.notes)
    assert "no preview row reached judge" in text
    assert "cannot tell a 5% yield from 0%" in text
    assert "problems: kept 0 of 3" in text


def test_whole_dataset_stages_are_named_and_time_runs_on_one_worker() -> None:
    measures = [
        StageMeasure(stage="make", n_in=4, n_out=4, n_rejected=0, seconds=4.0),
        StageMeasure(
            stage="dedup", n_in=4, n_out=4, n_rejected=0, seconds=0.4, whole_dataset=True
        ),  # fmt: skip
    ]
    p = project(measures, 4, 160, {}, PRICES, parallel_shards=5, shard_size=16)
    make, dedup = p.stages
    assert make.wall_s.estimate == pytest.approx(160 * 1.0 / 5)  # 10 shards, 5 at a time
    assert dedup.wall_s.estimate == pytest.approx(160 * 0.1)  # alone
    assert any("dedup looks at the whole dataset" in n for n in p.notes)
    assert p.wall_s.low <= p.wall_s.estimate <= p.wall_s.high  # type: ignore[operator]


def test_a_model_answering_one_at_a_time_is_timed_by_the_stage_not_the_queue() -> None:
    """Three requests queued on the embedded model: latencies 2, 4, 6 s (each waits for
    the ones before), the stage took 6 s: 2 s a request, not the mean latency of 4."""
    one = [StageMeasure(stage="g", n_in=3, n_out=3, n_rejected=0, seconds=6.0,
                        calls=[call(3, 300, 300, 12.0, model="m-local")])]  # fmt: skip
    serial = {("openai", "m-local"): Endpoint(concurrency=1)}
    p = project(one, 3, 30, serial, PRICES, parallel_shards=8, shard_size=16)
    assert p.wall_s.estimate == pytest.approx(30 * 2.0)
