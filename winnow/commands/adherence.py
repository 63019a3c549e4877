"""`winnow adherence`: score answers for context adherence, stdin to stdout.

Two methods: ``votes`` (ChainPoll: J sampled yes/no judgements, any provider) and
``probability`` (``tasks.recipes.rag_qa.probability``: P(supported) of each sentence of
the answer read from the scorer's next-token probabilities, MiniCheck style; the answer
scores its weakest claim; needs a provider with log-probabilities: ``local`` or an
OpenAI-compatible ``/completions`` endpoint with echo). ``auto`` (the default) reads
probabilities on the embedded model and takes votes elsewhere. ``--calibrate FILE`` picks the
threshold on labelled rows (``"supported": true/false``) before scoring stdin.

Reads JSON Lines ``{"id", "context", "question", "answer"}`` and writes the same rows
with ``adherence`` (share of the J judges voting "supported", 0 to 1) and ``supported``
(adherence >= threshold), plus ``adherence_explanation`` (the majority's reasoning, or
why the answer failed the grounding check by code that runs before any judge is paid). A row
no judge vote could be read for gets ``adherence: null``, ``supported: false`` and an
``adherence_error``. Votes are journaled: scoring the same rows again is free.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from winnow.console import err, fail
from winnow.errors import user_errors

FIELDS = ("context", "question", "answer")


def adherence(
    provider: str = typer.Option(
        "local", help="Judge: local | openai | anthropic | openai-compatible."
    ),
    model: str = typer.Option("", help="Judge model (default: the provider's default)."),
    base_url: str = typer.Option(None, help="Judge server URL (openai-compatible)."),
    judges: int = typer.Option(3, "--judges", "-j", min=1, max=10, help="Judgements per row (J)."),
    method: str = typer.Option(
        "auto",
        help="probability (P(yes) per claim, read once) | votes (ChainPoll, J sampled) | "
        "auto (probability on the embedded model, votes elsewhere).",
    ),
    threshold: float | None = typer.Option(
        None,
        min=0.0,
        max=1.0,
        help="Score needed for supported (votes: 0.67; probability: 0.63, calibrated on "
        "benchmarks/data/adherence_labelled.jsonl).",
    ),
    calibrate: Path | None = typer.Option(
        None, help="Labelled rows (supported: true/false): the threshold is chosen on them."
    ),
    max_tokens: int = typer.Option(120, help="Judge output budget per vote."),
    grounding_min_share: float = typer.Option(
        0.75,
        min=0.0,
        max=1.0,
        help="Check by code before the judge: share of the answer's words that must appear "
        "in the context, and no number from outside it; a row that fails scores 0 and no "
        "judge is asked. 0 turns the check off.",
    ),
    concurrency: int = typer.Option(16, help="Max requests in flight (remote providers)."),
) -> None:
    """Score {"id", "context", "question", "answer"} rows from stdin for context adherence."""
    from tasks.core.jsonl import InputError, numbered_rows

    rows = []
    try:
        for n, row in numbered_rows(sys.stdin):
            missing = [f for f in FIELDS if not row.get(f)]
            if missing:
                raise fail(f"stdin line {n}: missing {', '.join(missing)}")
            rows.append(row)
    except InputError as exc:
        raise fail(str(exc)) from None
    if method not in ("auto", "votes", "probability"):
        raise fail(f"--method: auto, votes or probability, not {method!r}")
    from tasks.recipes.rag_qa.probability import CALIBRATED_THRESHOLD, resolve_method

    try:
        method = resolve_method(method, provider)  # type: ignore[arg-type]
    except ValueError as exc:
        raise fail(f"--method: {exc}") from None
    labelled = _labelled(calibrate) if calibrate else []
    if not rows:
        return
    with user_errors():
        from tasks.llm.base import ProviderSpec

        spec = ProviderSpec(
            kind=provider, model=model, base_url=base_url, max_concurrency=concurrency
        )
        if method == "probability":
            score = _probability_scorer(spec)
            err.print(f"adherence: {len(rows)} row(s), P(supported) per claim on {spec.kind}")
        else:
            score = _vote_scorer(spec, judges, max_tokens, grounding_min_share)
            err.print(f"adherence: {len(rows)} row(s), J={judges} on {spec.kind}")
        default_cut = CALIBRATED_THRESHOLD if method == "probability" else 0.67
        cut = threshold if threshold is not None else default_cut
        if labelled:
            from tasks.recipes.rag_qa.probability import calibrate_threshold

            marks = [a.score if a.score is not None else 0.0 for a, _ in score(labelled)]
            cut = calibrate_threshold(marks, [bool(r["supported"]) for r in labelled])
            err.print(f"adherence: threshold {cut} calibrated on {len(labelled)} labelled rows")
        scored = score([{f: r[f] for f in FIELDS} for r in rows])
    for row, (result, _) in zip(rows, scored, strict=True):
        extra = {
            "adherence": result.score,
            "supported": result.score is not None and result.score >= cut,
            "adherence_explanation": result.explanation,
        }
        if result.claims:
            extra["adherence_claims"] = result.claims
        if result.score is None:
            errors = [v.error for v in result.votes if v.error]
            extra["adherence_error"] = "; ".join(errors) or result.explanation
        sys.stdout.write(json.dumps({**row, **extra}, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _labelled(path: Path) -> list[dict[str, Any]]:
    from tasks.core.jsonl import InputError, numbered_rows

    rows = []
    try:
        with path.open(encoding="utf-8") as stream:
            for n, row in numbered_rows(stream):
                if any(not row.get(f) for f in FIELDS) or not isinstance(
                    row.get("supported"), bool
                ):
                    raise fail(f"{path} line {n}: needs {', '.join(FIELDS)} and supported")
                rows.append(row)
    except (InputError, OSError) as exc:
        raise fail(f"--calibrate: {exc}") from None
    return rows


def _probability_scorer(spec: Any) -> Callable[[list[dict[str, Any]]], list[Any]]:
    from tasks.recipes.rag_qa.probability import ProbabilityConfig, score_rows_by_probability

    config = ProbabilityConfig(scorer=spec)
    return lambda rows: score_rows_by_probability(rows, config)


def _vote_scorer(
    spec: Any, judges: int, max_tokens: int, grounding_min_share: float
) -> Callable[[list[dict[str, Any]]], list[Any]]:
    from tasks.llm.clients import client_for
    from tasks.pipeline.llm_stage import llm_config
    from tasks.recipes.rag_qa.adherence import TEMPLATE, ChainPollConfig, score_rows

    client_for(spec).check()
    config = ChainPollConfig(
        llm=llm_config(spec, TEMPLATE, max_tokens=max_tokens),
        judges=judges,
        grounding_min_share=grounding_min_share,
    )
    return lambda rows: score_rows(rows, config)


def register(app: typer.Typer) -> None:
    app.command("adherence")(adherence)
