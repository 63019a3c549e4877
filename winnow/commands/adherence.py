"""`winnow adherence`: score answers for context adherence (ChainPoll), stdin to stdout.

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
    threshold: float = typer.Option(0.67, min=0.0, max=1.0, help="Score needed for supported."),
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
    if not rows:
        return
    with user_errors():
        from tasks.llm.base import ProviderSpec
        from tasks.llm.clients import client_for
        from tasks.pipeline.llm_stage import llm_config
        from tasks.recipes.rag_qa.adherence import TEMPLATE, ChainPollConfig, score_rows

        spec = ProviderSpec(
            kind=provider, model=model, base_url=base_url, max_concurrency=concurrency
        )
        client_for(spec).check()
        config = ChainPollConfig(
            llm=llm_config(spec, TEMPLATE, max_tokens=max_tokens),
            judges=judges,
            grounding_min_share=grounding_min_share,
        )
        err.print(f"adherence: {len(rows)} row(s), J={judges} on {spec.kind}")
        scored = score_rows([{f: r[f] for f in FIELDS} for r in rows], config)
    for row, (result, _) in zip(rows, scored, strict=True):
        extra = {
            "adherence": result.score,
            "supported": result.score is not None and result.score >= threshold,
            "adherence_explanation": result.explanation,
        }
        if result.score is None:
            extra["adherence_error"] = "; ".join(v.error for v in result.votes if v.error)
        sys.stdout.write(json.dumps({**row, **extra}, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    app.command("adherence")(adherence)
