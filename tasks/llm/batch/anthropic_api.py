"""The Anthropic Message Batches adapter: requests inline in ``messages.batches.create``,
results streamed as JSONL from the batch's ``results_url``.

Request params are built by the live adapter (``AnthropicProvider._arguments``), so a
batched request carries the same parameters, and the same journal key, as a live one.
A copy of what was submitted is written next to the job's state for audit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic

from tasks.llm.base import ChatRequest, Completion, Usage
from tasks.llm.batch.api import BatchError, BatchStatus, write_jsonl
from tasks.llm.client import LLMClient
from tasks.llm.secrets import anthropic_key


class AnthropicBatchAdapter:
    def __init__(self, client: LLMClient) -> None:
        self._provider: Any = client.provider  # an AnthropicProvider
        key = anthropic_key(client.spec)
        self._sdk = anthropic.Anthropic(
            api_key=key,
            base_url=client.spec.base_url or None,
            max_retries=3,
            timeout=client.spec.timeout_s,
        )

    def submit(self, items: list[tuple[str, ChatRequest]], job: str, workdir: Path) -> str:
        requests = [
            {"custom_id": custom_id, "params": self._provider._arguments(request)}
            for custom_id, request in items
        ]
        write_jsonl(workdir / f"{job}.requests.jsonl", requests)
        return self._sdk.messages.batches.create(requests=requests).id  # type: ignore[arg-type]

    def find(self, job: str) -> str | None:
        """Message Batches carry no metadata to find a job's batch by, so a process killed
        between creating a batch and saving its id submits it again on restart (the only
        window in which a request can be paid twice)."""
        return None

    def status(self, batch_id: str) -> BatchStatus:
        batch = self._sdk.messages.batches.retrieve(batch_id)
        state = "ended" if batch.processing_status == "ended" else "running"
        return BatchStatus(state=state, detail=batch.processing_status)

    def results(self, batch_id: str) -> dict[str, Completion | BatchError]:
        return {
            item.custom_id: parse_result(item.result)
            for item in self._sdk.messages.batches.results(batch_id)
        }


def parse_result(result: Any) -> Completion | BatchError:
    kind = getattr(result, "type", "")
    if kind == "succeeded":
        message = result.message
        text = "".join(
            getattr(b, "text", "") for b in message.content if getattr(b, "type", "") == "text"
        )
        return Completion(
            text=text,
            usage=Usage(
                prompt_tokens=message.usage.input_tokens or 0,
                completion_tokens=message.usage.output_tokens or 0,
            ),
            finish_reason=message.stop_reason,
        )
    if kind == "errored":
        inner = getattr(getattr(result, "error", None), "error", None)
        err_type = getattr(inner, "type", "api_error")
        message = f"{err_type}: {getattr(inner, 'message', '')}"
        invalid = err_type in ("invalid_request_error", "not_found_error", "permission_error")
        return BatchError(kind="invalid" if invalid else "failed", message=message)
    if kind == "expired":
        return BatchError(kind="expired", message="the batch expired before this request ran")
    if kind == "canceled":
        return BatchError(kind="canceled", message="the batch was canceled")
    return BatchError(kind="failed", message=f"unknown result type {kind!r}")
