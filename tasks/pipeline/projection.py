"""What a full run would cost, projected from a preview of a few of its inputs.

A preview runs ``n`` inputs through every stage. Each stage's measured yield (rows kept of
rows decided) is uncertain: 2 kept of 3 says the true yield lies anywhere from about 21%
to 94% (the Wilson score interval, 95%), and 3 rows cannot tell a 5% yield from 0%.
The projection carries that through the funnel: the low bound takes every stage's low
yield, the high bound every stage's high one (both at once, so the band is wide on
purpose), the estimate the measured yields. Per row of a stage, the requests, tokens and
latency are the preview's means, the prices come from the price table (at the batch
discount when batch is on), and the wall time from the measured latency, the
concurrency and, where a provider sent them, its per-minute quotas.

Pure functions over plain numbers, so the arithmetic is tested without a run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from pydantic import BaseModel, Field

from tasks.llm.base import Usage
from tasks.llm.prices import PriceTable

Z95 = 1.959964  # two-sided 95%


def wilson(kept: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``kept / n`` (0..1 with no data)."""
    if n <= 0:
        return 0.0, 1.0
    p = kept / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, center - half), min(1.0, center + half)


def poisson(k: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The score interval of a rate: ``k`` events over ``n`` rows, per row."""
    if n <= 0:
        return 0.0, math.inf
    root = z * math.sqrt(k + z * z / 4)
    return max(0.0, (k + z * z / 2 - root) / n), (k + z * z / 2 + root) / n


def requests_per_row(requests: int, n_in: int) -> dict[str, float]:
    """Requests a row of a stage makes: the preview's mean, and a band. When every row
    was asked at least once, the uncertain part is the extra requests (re-asks of
    malformed answers, retries of refusals) beyond one a row; when not (revision rounds
    that only failing rows ask), the whole rate is."""
    if n_in <= 0:
        return dict.fromkeys(SCENARIOS, 0.0)
    extra = requests - n_in
    if extra >= 0:
        low, high = poisson(extra, n_in)
        return {"estimate": requests / n_in, "low": 1 + low, "high": 1 + high}
    low, high = poisson(requests, n_in)
    return {"estimate": requests / n_in, "low": low, "high": high}


class Band(BaseModel):
    """A projected figure: the estimate and its bounds. ``high`` is None when this
    preview cannot bound it (a stage it never reached may see rows in the full run)."""

    estimate: float
    low: float
    high: float | None


class CallMeasure(BaseModel):
    """A stage's LLM calls to one provider and model in the preview."""

    provider: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    latency_s: float  # summed


class StageMeasure(BaseModel):
    """What the preview measured of one stage (the input of a projection)."""

    stage: str
    n_in: int
    n_out: int
    n_rejected: int
    whole_dataset: bool = False  # dedup, balance: their yield depends on the run's size
    seconds: float = 0.0  # the stage's own work: its shards' time (or a global stage's)
    calls: list[CallMeasure] = Field(default_factory=list)


class Endpoint(BaseModel):
    """How fast a provider and model can go: the concurrency, and the per-minute quotas
    its headers reported (None where none was sent)."""

    concurrency: float
    requests_per_min: float | None = None
    tokens_per_min: float | None = None


class StageProjection(BaseModel):
    stage: str
    preview_in: int
    preview_kept: int
    yield_measured: float | None  # kept of decided in the preview (None: not reached)
    yield_low: float
    yield_high: float
    fan_out: float  # rows decided per row in (n solutions per problem...)
    whole_dataset: bool
    rows_in: Band
    rows_out: Band
    requests: Band
    prompt_tokens: Band
    completion_tokens: Band
    wall_s: Band


class ModelProjection(BaseModel):
    provider: str
    model: str
    batch: bool
    price_in_per_m: float | None  # USD per 1M tokens; None: not in the price table
    price_out_per_m: float | None
    requests: Band
    prompt_tokens: Band
    completion_tokens: Band
    cost_usd: Band


class Projection(BaseModel):
    preview_rows: int
    full_rows: int
    confidence: float = 0.95
    requests: Band
    prompt_tokens: Band
    completion_tokens: Band
    cost_usd: Band
    wall_s: Band
    kept: Band
    by_model: list[ModelProjection]
    stages: list[StageProjection]
    already_answered: int  # requests of this preview now journaled: the full run reuses them
    notes: list[str]


SCENARIOS = ("estimate", "low", "high")


def project(
    measures: list[StageMeasure],
    preview_rows: int,
    full_rows: int,
    endpoints: dict[tuple[str, str], Endpoint],
    prices: PriceTable,
    *,
    batch: bool = False,
    parallel_shards: int = 1,
    shard_size: int = 16,
    already_answered: int = 0,
) -> Projection:
    """The full run of ``full_rows`` inputs, projected from a preview of ``preview_rows``
    whose stages, in funnel order, measured ``measures``."""
    notes: list[str] = []
    stages: list[StageProjection] = []
    # per scenario: rows out of the stage before (None before the first)
    previous: dict[str, float] | None = None
    previous_measure: StageMeasure | None = None
    by_model: dict[tuple[str, str], dict[str, dict[str, float | None]]] = {}
    never_reached: list[str] = []

    for m in measures:
        decided = m.n_out + m.n_rejected
        fan = decided / m.n_in if m.n_in else 1.0
        measured = m.n_out / decided if decided else None
        low_y, high_y = wilson(m.n_out, decided)
        yields = {
            "estimate": measured if measured is not None else 0.0,
            "low": low_y if decided else 0.0,
            "high": high_y if decided else 1.0,
        }
        rows_in = {s: _rows_in(s, m, previous, previous_measure, preview_rows, full_rows)
                   for s in SCENARIOS}  # fmt: skip
        rows_out = {s: rows_in[s] * fan * yields[s] for s in SCENARIOS}
        reached = m.n_in > 0
        if not reached:
            never_reached.append(m.stage)

        per_stage = {"requests": _zero(), "prompt_tokens": _zero(), "completion_tokens": _zero()}
        llm_wall = _zero()
        for call in m.calls:
            figures = {
                "requests": call.requests,
                "prompt_tokens": call.prompt_tokens,
                "completion_tokens": call.completion_tokens,
            }
            model = by_model.setdefault((call.provider, call.model), _model_zero())
            endpoint = endpoints.get((call.provider, call.model)) or Endpoint(concurrency=16)
            latency = call.latency_s / call.requests if call.requests else 0.0
            if endpoint.concurrency <= 1 and m.seconds > 0:
                # one request at a time (the embedded model): a latency includes the wait
                # behind the others, so the stage's time per request is the closer figure
                latency = min(latency, m.seconds / sum(c.requests for c in m.calls))
            rates = requests_per_row(call.requests, m.n_in)
            for s in SCENARIOS:
                requests = rows_in[s] * rates[s]
                # tokens go with the requests: the preview's mean per request
                projected = {k: requests * v / call.requests for k, v in figures.items()}
                for k, v in projected.items():
                    per_stage[k][s] = _add(per_stage[k][s], v)
                    model[k][s] = _add(model[k][s], v)
                llm_wall[s] = _add(
                    llm_wall[s],
                    _llm_seconds(projected, latency, endpoint, parallel_shards * shard_size),
                )
        if not reached:  # nothing measured: no request is its low, nothing bounds its high
            for figure in (*per_stage.values(), llm_wall):
                figure["high"] = None if rows_in["high"] > 0 else 0.0
        wall = llm_wall if m.calls else _work_seconds(m, rows_in, parallel_shards, shard_size)
        if m.whole_dataset and reached:
            notes.append(
                f"{m.stage} looks at the whole dataset: its yield on {m.n_in} preview rows "
                "understates what it removes from a full run (more rows, more duplicates)"
            )
        stages.append(
            StageProjection(
                stage=m.stage,
                preview_in=m.n_in,
                preview_kept=m.n_out,
                yield_measured=measured,
                yield_low=yields["low"],
                yield_high=yields["high"],
                fan_out=fan,
                whole_dataset=m.whole_dataset,
                rows_in=_band(rows_in),
                rows_out=_band(rows_out),
                requests=_band(per_stage["requests"]),
                prompt_tokens=_band(per_stage["prompt_tokens"]),
                completion_tokens=_band(per_stage["completion_tokens"]),
                wall_s=_band(wall),
            )
        )
        previous, previous_measure = rows_out, m

    models = [
        _model_projection(provider, model, figures, prices, batch)
        for (provider, model), figures in by_model.items()
    ]
    totals = {
        k: _band(_sum(getattr(st, k) for st in stages))
        for k in ("requests", "prompt_tokens", "completion_tokens")
    }
    cost = _band(_sum(mp.cost_usd for mp in models))
    if any(st.requests.high is None for st in stages):
        cost = Band(estimate=cost.estimate, low=cost.low, high=None)
    walls = [st.wall_s for st in stages]
    wall = Band(
        estimate=sum(w.estimate for w in walls),
        low=max((w.low for w in walls), default=0.0),  # every stage overlapping the others
        high=None if any(w.high is None for w in walls) else sum(w.high or 0 for w in walls),
    )
    kept = stages[-1].rows_out if stages else Band(estimate=0, low=0, high=0)
    notes[:0] = _uncertainty_notes(stages, preview_rows, never_reached)
    if already_answered:
        notes.append(
            f"{already_answered} request(s) of this preview are journaled: the full run with "
            "the same parameters reuses those answers (its first rows are the preview's) and "
            "pays for them once"
        )
    return Projection(
        preview_rows=preview_rows,
        full_rows=full_rows,
        requests=totals["requests"],
        prompt_tokens=totals["prompt_tokens"],
        completion_tokens=totals["completion_tokens"],
        cost_usd=cost,
        wall_s=wall,
        kept=kept,
        by_model=models,
        stages=stages,
        already_answered=already_answered,
        notes=notes,
    )


# --- the pieces ------------------------------------------------------------------------------


def _zero() -> dict[str, float | None]:
    return dict.fromkeys(SCENARIOS, 0.0)


def _model_zero() -> dict[str, dict[str, float | None]]:
    return {k: _zero() for k in ("requests", "prompt_tokens", "completion_tokens")}


def _add(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


def _sum(bands: Iterable[Band]) -> dict[str, float | None]:
    total = _zero()
    for band in bands:
        total = {
            "estimate": _add(total["estimate"], band.estimate),
            "low": _add(total["low"], band.low),
            "high": _add(total["high"], band.high),
        }
    return total


def _band(values: dict[str, float | None]) -> Band:
    return Band(
        estimate=round(values["estimate"] or 0.0, 6),
        low=round(values["low"] or 0.0, 6),
        high=None if values["high"] is None else round(values["high"], 6),
    )


def _rows_in(
    scenario: str,
    m: StageMeasure,
    previous: dict[str, float] | None,
    previous_measure: StageMeasure | None,
    preview_rows: int,
    full_rows: int,
) -> float:
    """Rows into a stage in the full run: what the stage before kept when the preview
    shows the one feeding the other, else the preview's share of the inputs scaled up."""
    scaled = full_rows * m.n_in / preview_rows if preview_rows else 0.0
    if previous is None or previous_measure is None:
        return scaled
    if previous_measure.n_out == m.n_in or previous_measure.n_out == 0:
        return previous[scenario]
    return previous[scenario] * m.n_in / previous_measure.n_out


def _llm_seconds(
    projected: dict[str, float], latency_s: float, endpoint: Endpoint, rows_in_flight: int
) -> float:
    """Time for a stage's requests to one endpoint: at most ``concurrency`` in flight
    (and no more than the shards in flight hold), each taking the measured latency, and
    no faster than the quotas the provider reported allow."""
    concurrency = max(1.0, min(endpoint.concurrency, float(rows_in_flight)))
    seconds = projected["requests"] * latency_s / concurrency
    if endpoint.requests_per_min:
        seconds = max(seconds, projected["requests"] * 60.0 / endpoint.requests_per_min)
    if endpoint.tokens_per_min:
        tokens = projected["prompt_tokens"] + projected["completion_tokens"]
        seconds = max(seconds, tokens * 60.0 / endpoint.tokens_per_min)
    return seconds


def _work_seconds(
    m: StageMeasure, rows_in: dict[str, float], parallel_shards: int, shard_size: int
) -> dict[str, float | None]:
    """A stage without LLM calls (the sandbox, a dedup): its measured time per row, with
    as many shards at once as run in parallel (a whole-dataset stage runs alone)."""
    if not m.n_in:
        return {s: (0.0 if s != "high" or rows_in[s] == 0 else None) for s in SCENARIOS}
    per_row = m.seconds / m.n_in
    out: dict[str, float | None] = {}
    for s in SCENARIOS:
        shards = max(1.0, rows_in[s] / shard_size)
        parallel = 1.0 if m.whole_dataset else min(float(parallel_shards), shards)
        out[s] = rows_in[s] * per_row / parallel
    return out


def _model_projection(
    provider: str,
    model: str,
    figures: dict[str, dict[str, float | None]],
    prices: PriceTable,
    batch: bool,
) -> ModelProjection:
    price = None if provider == "local" else prices.price(model)
    cost: dict[str, float | None] = {}
    for s in SCENARIOS:
        prompt, completion = figures["prompt_tokens"][s], figures["completion_tokens"][s]
        if prompt is None or completion is None:
            cost[s] = None
            continue
        usage = Usage(prompt_tokens=round(prompt), completion_tokens=round(completion))
        cost[s] = prices.cost(provider, model, usage, batch=batch)
    discount = prices.batch_discount if batch else 1.0
    return ModelProjection(
        provider=provider,
        model=model,
        batch=batch,
        price_in_per_m=None if price is None else price.input * discount,
        price_out_per_m=None if price is None else price.output * discount,
        requests=_band(figures["requests"]),
        prompt_tokens=_band(figures["prompt_tokens"]),
        completion_tokens=_band(figures["completion_tokens"]),
        cost_usd=_band(cost),
    )


def _uncertainty_notes(
    stages: list[StageProjection], preview_rows: int, never_reached: list[str]
) -> list[str]:
    """The uncertainty in words a person reads before spending money."""
    notes = [
        f"bounds are 95% intervals from {preview_rows} preview row(s): Wilson intervals of "
        "each stage's yield and score intervals of its requests per row, all at their low "
        "(or high) bound at once; tokens and latency per request are the preview's means; "
        "the wall time leaves out the start-up (a Prefect server, the sandbox image)"
    ]
    for st in stages:
        if st.yield_measured is None:
            continue
        decided = round(st.preview_in * st.fan_out)
        if st.yield_high - st.yield_low > 0.5:
            notes.append(
                f"{st.stage}: kept {st.preview_kept} of {decided}; the true yield could be "
                f"anywhere from {st.yield_low:.0%} to {st.yield_high:.0%}"
            )
    if never_reached:
        notes.append(
            f"no preview row reached {', '.join(never_reached)}: what it costs is unknown, so "
            "the high bounds that depend on it are left open; preview more rows"
        )
    if preview_rows < 30:
        notes.append(
            f"a {preview_rows}-row preview cannot tell a 5% yield from 0% (or from 50%): to "
            "narrow the band, preview more rows (it narrows about as 1/sqrt(rows))"
        )
    return notes
