"""Structured output: ask for JSON, validate it against a pydantic schema, re-ask with
the validation error when it does not fit, and keep the raw text when it never does.

Each re-ask is a new request (the conversation plus the bad answer plus the error), so
it has its own journal key: a re-run replays the whole exchange from the journal, and
fixing the *schema* or the parser later reuses every paid answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from tasks.llm.base import ChatRequest, ChatResult, Message

REASK = (
    "Your previous answer could not be used: {error}\n"
    "Answer again with only one JSON object (no prose, no code fence) that matches this "
    "JSON schema:\n{schema}"
)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


class JsonResult(BaseModel):
    """The outcome of one structured request, re-asks included."""

    value: dict[str, Any] | None = None  # the validated object (schema defaults applied)
    raw: str | None = None  # the last answer's text: kept above all when it still fails
    error: str | None = None  # why the last answer was rejected, or why a request failed
    attempts: int = 0  # answers obtained (1 + re-asks)
    results: list[ChatResult] = Field(default_factory=list)  # every request, in order

    @property
    def ok(self) -> bool:
        return self.error is None and self.value is not None

    @property
    def cost_usd(self) -> float:
        return sum(r.cost_usd for r in self.results)


def extract_json(text: str) -> Any:
    """Parse a JSON object out of a model's answer: the whole text, else a fenced block,
    else the span from the first ``{`` to the last ``}``. Raises ValueError."""
    candidates = [text.strip()]
    candidates += [m.strip() for m in _FENCE.findall(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    first_error: Exception | None = None
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError as exc:
            first_error = first_error or exc
    raise ValueError(f"not valid JSON ({first_error})")


def validate(text: str, schema: type[BaseModel]) -> tuple[dict[str, Any] | None, str | None]:
    """(value, None) when ``text`` holds an object valid for ``schema``, else (None, why)."""
    try:
        data = extract_json(text)
    except ValueError as exc:
        return None, str(exc)
    if not isinstance(data, dict):
        return None, f"expected a JSON object, got {type(data).__name__}"
    try:
        # by alias: the keys the model wrote, so `Schema(**value)` works with aliased fields
        return schema.model_validate(data).model_dump(mode="json", by_alias=True), None
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
        ]
        return None, "schema validation failed: " + "; ".join(problems[:10])


def reask_request(
    request: ChatRequest, answer: str, error: str, schema: type[BaseModel]
) -> ChatRequest:
    schema_text = json.dumps(schema.model_json_schema(), separators=(",", ":"))
    messages = [
        *request.messages,
        Message(role="assistant", content=answer),
        Message(role="user", content=REASK.format(error=error, schema=schema_text)),
    ]
    return request.model_copy(update={"messages": messages})


async def answer_json(
    answer: Callable[[ChatRequest], Awaitable[ChatResult]],
    request: ChatRequest,
    schema: type[BaseModel],
    max_reasks: int = 2,
) -> JsonResult:
    """Drive one structured exchange with ``answer`` (the client's journaled send)."""
    current = request.model_copy(
        update={"params": request.params.model_copy(update={"json_mode": True})}
    )
    results: list[ChatResult] = []
    while True:
        result = await answer(current)
        results.append(result)
        if not result.ok:  # the request itself failed (after its retries): no re-ask
            return JsonResult(
                raw=result.text, error=result.error, attempts=len(results), results=results
            )
        text = result.text or ""
        value, error = validate(text, schema)
        if error is None:
            return JsonResult(value=value, raw=text, attempts=len(results), results=results)
        if len(results) > max_reasks:
            return JsonResult(raw=text, error=error, attempts=len(results), results=results)
        current = reask_request(current, text, error, schema)
