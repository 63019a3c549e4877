"""The common start of an LLM stage that wants JSON: fill the pinned template for each
row, ask with ``complete_json`` (validated against a pydantic schema, re-asked when it
does not fit), record every call, and reject the rows whose answer never fits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from tasks.clients import client_for
from tasks.generation import LLMConfig, load_pinned
from tasks.llm.structured import JsonResult
from tasks.stage import StageContext, StageResult


def ask_json(
    rows: list[dict[str, Any]],
    config: LLMConfig,
    schema: type[BaseModel],
    ctx: StageContext,
    out: StageResult,
    malformed: str = "malformed model answer",
) -> Iterator[tuple[dict[str, Any], JsonResult]]:
    """Yield ``(row, answer)`` for each row whose answer fits ``schema``; the others are
    rejected into ``out`` as ``"<malformed>: <why>"`` with the raw text in the detail."""
    template = load_pinned(config)
    client = client_for(config.provider)
    requests = [template.request(row, params=config.params) for row in rows]
    answers = client.complete_json(requests, schema, on_result=lambda *_: ctx.progress())
    for row, answer in zip(rows, answers, strict=True):
        out.add_calls(answer.results, template.name, template.version)
        if answer.ok:
            yield row, answer
        else:
            out.reject(row, ctx.stage, f"{malformed}: {answer.error}", {"raw": answer.raw})
