"""The OpenAI Batch API adapter: a JSONL request file uploaded with ``purpose="batch"``,
a batch on ``/v1/chat/completions``, results from the output and error files.

Request bodies are built by the live adapter (``OpenAIProvider._arguments``), so a
request sent through a batch has the same parameters, and the same journal key, as
when it is sent live.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai

from tasks.llm.base import ChatRequest, Completion, Usage
from tasks.llm.batch.api import BatchError, BatchStatus, write_jsonl
from tasks.llm.client import LLMClient

ENDPOINT = "/v1/chat/completions"
ENDED = {"completed", "failed", "expired", "cancelled"}
UNUSABLE = {"failed", "cancelling", "cancelled"}  # a found batch in these states is not adopted
FIND_LIMIT = 100  # how many of the newest batches ``find`` looks through


class OpenAIBatchAdapter:
    def __init__(self, client: LLMClient) -> None:
        self._provider: Any = client.provider  # an OpenAIProvider, model resolved
        self._sdk = openai.OpenAI(
            api_key=self._provider._api_key(),
            base_url=client.spec.base_url or None,
            max_retries=3,
            timeout=client.spec.timeout_s,
        )

    def submit(self, items: list[tuple[str, ChatRequest]], job: str, workdir: Path) -> str:
        lines = [
            {
                "custom_id": custom_id,
                "method": "POST",
                "url": ENDPOINT,
                "body": _without_logprobs(self._provider._arguments(request)),
            }
            for custom_id, request in items
        ]
        path = write_jsonl(workdir / f"{job}.requests.jsonl", lines)
        with path.open("rb") as fh:
            uploaded = self._sdk.files.create(file=fh, purpose="batch")
        batch = self._sdk.batches.create(
            input_file_id=uploaded.id,
            endpoint=ENDPOINT,
            completion_window="24h",
            metadata={"winnow_job": job},
        )
        return batch.id

    def find(self, job: str) -> str | None:
        """Batches carry ``metadata.winnow_job``: look through the newest ones."""
        for n, batch in enumerate(self._sdk.batches.list(limit=FIND_LIMIT)):
            if n >= FIND_LIMIT:
                break
            if (batch.metadata or {}).get("winnow_job") == job and batch.status not in UNUSABLE:
                return batch.id
        return None

    def status(self, batch_id: str) -> BatchStatus:
        batch = self._sdk.batches.retrieve(batch_id)
        return BatchStatus(
            state="ended" if batch.status in ENDED else "running", detail=batch.status
        )

    def results(self, batch_id: str) -> dict[str, Completion | BatchError]:
        batch = self._sdk.batches.retrieve(batch_id)
        out: dict[str, Completion | BatchError] = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            for line in self._sdk.files.content(file_id).text.splitlines():
                if line.strip():
                    row = json.loads(line)
                    out[row["custom_id"]] = parse_line(row)
        return out


def parse_line(row: dict[str, Any]) -> Completion | BatchError:
    """One line of an output or error file."""
    response, error = row.get("response"), row.get("error")
    if error:
        code = str(error.get("code") or "")
        kind = {"batch_expired": "expired", "batch_cancelled": "canceled"}.get(code, "failed")
        return BatchError(kind=kind, message=f"{code}: {error.get('message', '')}".strip(": "))  # type: ignore[arg-type]
    if not response:
        return BatchError(kind="failed", message="no response in result line")
    status, body = int(response.get("status_code") or 0), response.get("body") or {}
    if status != 200:
        message = (body.get("error") or {}).get("message", "") if isinstance(body, dict) else ""
        kind = "invalid" if 400 <= status < 500 and status not in (408, 409, 429) else "failed"
        return BatchError(kind=kind, message=f"HTTP {status}: {message}")  # type: ignore[arg-type]
    try:
        choice = body["choices"][0]
        usage = body.get("usage") or {}
        return Completion(
            text=choice["message"].get("content") or "",
            usage=Usage(
                prompt_tokens=usage.get("prompt_tokens", 0) or 0,
                completion_tokens=usage.get("completion_tokens", 0) or 0,
            ),
            finish_reason=choice.get("finish_reason"),
        )
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        return BatchError(kind="failed", message=f"malformed result body: {exc}")


def _without_logprobs(body: dict[str, Any]) -> dict[str, Any]:
    """A batch body asks for no logprobs: a model that refuses them would fail every line
    of the job at once, with no live request to learn from first."""
    return {k: v for k, v in body.items() if k != "logprobs"}
