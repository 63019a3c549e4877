"""A preview's document: a few inputs went through every stage and nothing was published;
what they measured (the funnel, the calls, the time) projects the full run.

The preview's LLM answers are journaled like any run's, and its inputs are the full
run's first ones: the full run with the same parameters reuses those answers and pays
for them once. Its shards are its own (a preview's shard holds fewer rows), so the stage
cache does not carry over; the journal does.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from itertools import islice
from typing import Any

from tasks.llm.clients import client_for
from tasks.llm.limiter import endpoint_profile
from tasks.llm.prices import PriceTable
from tasks.pipeline.params import ProviderParams
from tasks.pipeline.projection import CallMeasure, Endpoint, StageMeasure, project
from tasks.pipeline.publish import rejected_rows
from tasks.pipeline.runner import shards_in_flight
from tasks.pipeline.stage import StageOutput

KEPT_EXAMPLES = 3
REJECTED_EXAMPLES = 5


def preview_document(
    run: Any,
    final: StageOutput,
    to_example: Callable[[dict[str, Any]], dict[str, Any]],
    summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``run`` is the :class:`tasks.pipeline.run.Run` (not imported: it imports this)."""
    measures, answered = measure(run)
    params = run.params
    batch = bool(getattr(params, "batch", False))
    endpoints = _endpoints(params)
    full_rows = run.full_rows if run.full_rows is not None else run.preview_rows
    projection = project(
        measures,
        preview_rows=run.preview_rows,
        full_rows=full_rows,
        endpoints=endpoints,
        prices=PriceTable.load(),
        batch=batch,
        parallel_shards=shards_in_flight(),
        shard_size=run.shard_size,
        already_answered=answered,
    )
    if batch:
        projection.notes.append(
            "batch is on: this preview asked live (to answer in minutes) and the cost is "
            "priced at the batch discount; a batch job may take up to 24 h per LLM stage, "
            "so the wall time is the provider's, not this projection's"
        )
        llm_stages = sum(1 for m in measures if m.calls)
        high = projection.wall_s.high
        projection.wall_s.high = None if high is None else max(high, 86400.0 * llm_stages)
    took = time.monotonic() - run.started
    projection.notes.append(
        f"this preview took {took:.0f} s from the run's start: the full run's start-up "
        "(not in its wall time) is about what this preview's was"
    )
    if run.full_rows is not None and run.preview_rows >= run.full_rows:
        projection.notes.append(
            "this preview ran every input: the full run asks nothing new (the journal "
            "answers it all) and publishes what this preview kept"
        )
    if run.full_rows is None:
        projection.notes.append("the recipe did not say how many inputs it has: full = preview")
    return {
        **run.funnel_document(final.n_kept),
        **(summary or {}),
        "preview": True,
        "preview_rows": run.preview_rows,
        "preview_seconds": round(took, 3),
        "full_rows": full_rows,
        "examples": {
            "kept": [to_example(r) for r in islice(final.kept_rows(), KEPT_EXAMPLES)],
            "rejected": _rejected_examples(run.outputs),
        },
        "projection": projection.model_dump(mode="json"),
    }


def measure(run: Any) -> tuple[list[StageMeasure], int]:
    """Each stage of the run as the projection reads it, and how many of its requests
    were answered (journaled, so a full run reuses them)."""
    measures: list[StageMeasure] = []
    answered: set[str] = set()
    for output, row in zip(run.outputs, run.funnel, strict=True):
        calls: dict[tuple[str, str], dict[str, float]] = defaultdict(
            lambda: dict.fromkeys(("requests", "prompt", "completion", "latency"), 0.0)
        )
        seen: set[str] = set()
        for call in run._calls(output):
            if call["key"] in seen:  # as the catalog counts: a key once per stage
                continue
            seen.add(call["key"])
            if not call.get("error"):
                answered.add(call["key"])
            c = calls[(call.get("provider") or "", call.get("model") or "")]
            c["requests"] += 1
            c["prompt"] += call.get("prompt_tokens") or 0
            c["completion"] += call.get("completion_tokens") or 0
            c["latency"] += call.get("latency_s") or 0.0
        whole = output.stage in run.whole_dataset
        seconds = row.seconds if whole else sum(s.seconds for s in output.shards)
        measures.append(
            StageMeasure(
                stage=output.stage,
                n_in=row.n_in,
                n_out=row.n_out,
                n_rejected=row.n_rejected,
                whole_dataset=whole,
                seconds=seconds,
                calls=[
                    CallMeasure(
                        provider=provider,
                        model=model,
                        requests=int(c["requests"]),
                        prompt_tokens=int(c["prompt"]),
                        completion_tokens=int(c["completion"]),
                        latency_s=c["latency"],
                    )
                    for (provider, model), c in calls.items()
                ],
            )
        )
    return measures, len(answered)


def _rejected_examples(outputs: list[StageOutput]) -> list[dict[str, Any]]:
    """A few rejections, one per stage first, so the reasons shown differ."""
    chosen: list[dict[str, Any]] = []
    spare: list[dict[str, Any]] = []
    stages: set[str] = set()
    for row in rejected_rows(outputs):
        if row.get("stage") not in stages:
            stages.add(row.get("stage"))
            chosen.append(row)
        elif len(spare) < REJECTED_EXAMPLES:
            spare.append(row)
        if len(chosen) >= REJECTED_EXAMPLES:
            break
    return (chosen + spare)[:REJECTED_EXAMPLES]


def _endpoints(params: Any) -> dict[tuple[str, str], Endpoint]:
    """The generator's and the judge's endpoints as the preview found them, by the
    (provider, model) their calls name: concurrency and the quotas their headers told."""
    if not isinstance(params, ProviderParams):
        return {}
    found: dict[tuple[str, str], Endpoint] = {}
    for spec in (params.generator(), params.judge()):
        client = client_for(spec)  # the one the stages used: its model is resolved
        profile = endpoint_profile(client.name, spec.base_url or "", client.model) or {}
        ceiling = float(spec.max_concurrency)
        found[(client.name, client.model)] = Endpoint(
            # the embedded model answers one request at a time, whatever the parameter
            concurrency=1.0
            if spec.kind == "local"
            else min(ceiling, profile.get("concurrency") or ceiling),
            requests_per_min=profile.get("requests_per_min"),
            tokens_per_min=profile.get("tokens_per_min"),
        )
    return found
