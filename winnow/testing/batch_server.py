"""Test doubles of the OpenAI Batch API and Anthropic Message Batches (NOT models).

They extend the chat doubles of :mod:`winnow.testing.llm_server` (same script, same
``/v1/models`` for the client's check) with the batch endpoints, answering each batched
request from the script as the chat endpoint would:

- OpenAI: ``POST /v1/files`` (multipart, ``purpose=batch``), ``GET /v1/files/{id}/content``,
  ``POST /v1/batches``, ``GET /v1/batches`` (one page, with metadata), ``GET /v1/batches/{id}``;
- Anthropic: ``POST /v1/messages/batches``, ``GET /v1/messages/batches/{id}``,
  ``GET /v1/messages/batches/{id}/results`` (JSONL).

:class:`BatchBehaviour` scripts the unpleasant parts: batches that take several polls,
batches held in progress until released (to kill a flow while it waits), requests that
fail or expire the first *n* times they are batched, requests the API rejects as
invalid. ``batch_stats`` counts batches created and how often each request was batched.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections import Counter
from typing import Any

from pydantic import BaseModel, Field

from winnow.testing.anthropic_server import AnthropicDouble
from winnow.testing.llm_server import (
    OpenAIDouble,
    Receive,
    Reply,
    Scope,
    Script,
    Send,
    ServerThread,
    count_tokens,
    message_hash,
    read_body,
    render_messages,
    send_bytes,
    send_json,
)


class BatchBehaviour(BaseModel):
    polls_before_done: int = Field(1, ge=0, description="status polls answered 'in progress'")
    hold: bool = Field(False, description="stay in progress until release()")
    fail_pattern: str | None = None  # requests matching fail (server error) ...
    fail_times: int = 1  # ... the first n times they are batched
    expire_pattern: str | None = None  # requests matching expire ...
    expire_times: int = 1  # ... the first n times they are batched
    invalid_pattern: str | None = None  # requests matching are rejected as invalid (400)


class BatchStats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.batches_created = 0
        self.files_uploaded = 0
        self.status_polls = 0
        self.batched: Counter[str] = Counter()  # message hash -> times put in a batch


class _Item(BaseModel):
    custom_id: str
    messages: list[dict[str, Any]]
    model: str
    json_mode: bool = False


class _Batch(BaseModel):
    id: str
    items: list[_Item]
    created_at: int
    polls: int = 0
    ended: bool = False
    results: dict[str, tuple[str, Any]] = Field(default_factory=dict)  # id -> (kind, payload)
    input_file_id: str = ""
    metadata: dict[str, str] = Field(default_factory=dict)
    output_files: tuple[str | None, str | None] | None = None  # (output, error) once ended


class BatchEngine:
    """State and decisions shared by both batch doubles."""

    def __init__(self, behaviour: BatchBehaviour | None = None) -> None:
        self.behaviour = behaviour or BatchBehaviour()
        self.batch_stats = BatchStats()
        self.batches: dict[str, _Batch] = {}

    def release(self) -> None:
        self.behaviour = self.behaviour.model_copy(update={"hold": False})

    def create(self, items: list[_Item], prefix: str) -> _Batch:
        batch = _Batch(
            id=f"{prefix}{secrets.token_hex(6)}", items=items, created_at=int(time.time())
        )
        with self.batch_stats.lock:
            self.batch_stats.batches_created += 1
            for item in items:
                self.batch_stats.batched[message_hash(item.messages)] += 1
        self.batches[batch.id] = batch
        return batch

    def poll(self, batch: _Batch, chat: Any) -> None:
        """Advance a batch by one status poll; on its end, decide every result."""
        with self.batch_stats.lock:
            self.batch_stats.status_polls += 1
        if batch.ended or self.behaviour.hold:
            return
        batch.polls += 1
        if batch.polls <= self.behaviour.polls_before_done:
            return
        for item in batch.items:
            batch.results[item.custom_id] = self._decide(item, chat)
        batch.ended = True

    def _decide(self, item: _Item, chat: Any) -> tuple[str, Any]:
        b = self.behaviour
        text = render_messages(item.messages)
        seen = self.batch_stats.batched[message_hash(item.messages)]
        if b.invalid_pattern and re.search(b.invalid_pattern, text, re.DOTALL):
            return ("invalid", "invalid request (scripted)")
        if b.expire_pattern and re.search(b.expire_pattern, text, re.DOTALL):
            if seen <= b.expire_times:
                return ("expired", None)
        if b.fail_pattern and re.search(b.fail_pattern, text, re.DOTALL):
            if seen <= b.fail_times:
                return ("failed", "internal error (scripted)")
        reply: Reply = chat.engine.choose(item.messages, item.json_mode)
        if reply.fault:
            return ("failed", f"scripted fault {reply.fault}")
        return ("ok", (reply, count_tokens(text), count_tokens(reply.text)))


def _multipart_file(body: bytes, content_type: str) -> bytes:
    match = re.search(r"boundary=\"?([^\";]+)\"?", content_type)
    if not match:
        raise ValueError("no multipart boundary")
    for part in body.split(b"--" + match.group(1).encode()):
        head, _, content = part.partition(b"\r\n\r\n")
        if b'name="file"' in head:
            return content.rsplit(b"\r\n", 1)[0]
    raise ValueError("no file part")


def _header(scope: Scope, name: str) -> str:
    for key, value in scope.get("headers", []):
        if key.decode().lower() == name:
            return value.decode()
    return ""


class OpenAIBatchDouble(OpenAIDouble):
    def __init__(self, script: Script | None = None, behaviour: BatchBehaviour | None = None):
        super().__init__(script)
        self.batch = BatchEngine(behaviour)
        self.files: dict[str, bytes] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(("/v1/files", "/v1/batches")):
            await self._batch_route(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def _file(self, content: bytes, purpose: str) -> dict[str, Any]:
        file_id = f"file-{secrets.token_hex(6)}"
        self.files[file_id] = content
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": f"{file_id}.jsonl",
            "purpose": purpose,
            "status": "processed",
        }

    def _batch_json(self, batch: _Batch) -> dict[str, Any]:
        status = "in_progress"
        out_id = err_id = None
        if batch.ended:
            ok = [(c, r) for c, r in batch.results.items() if r[0] == "ok"]
            bad = [(c, r) for c, r in batch.results.items() if r[0] != "ok"]
            expired = any(r[0] == "expired" for _, r in bad)
            status = "expired" if expired else "completed"
            if batch.output_files is None:
                batch.output_files = (
                    self._file(self._lines(ok, batch), "batch_output")["id"] if ok else None,
                    self._file(self._lines(bad, batch), "batch_output")["id"] if bad else None,
                )
            out_id, err_id = batch.output_files
        done = sum(1 for r in batch.results.values() if r[0] == "ok")
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "input_file_id": batch.input_file_id,
            "completion_window": "24h",
            "status": status,
            "created_at": batch.created_at,
            "metadata": batch.metadata,
            "output_file_id": out_id,
            "error_file_id": err_id,
            "request_counts": {
                "total": len(batch.items),
                "completed": done,
                "failed": len(batch.results) - done,
            },
        }

    def _lines(self, results: list[tuple[str, tuple[str, Any]]], batch: _Batch) -> bytes:
        model = {i.custom_id: i.model for i in batch.items}
        lines = []
        for custom_id, (kind, payload) in results:
            line: dict[str, Any] = {
                "id": f"batch_req_{secrets.token_hex(4)}",
                "custom_id": custom_id,
            }
            if kind == "ok":
                reply, prompt_tokens, completion_tokens = payload
                body = self._render(reply, prompt_tokens, completion_tokens, model[custom_id])
                line.update(
                    response={"status_code": 200, "request_id": "r", "body": body}, error=None
                )
            elif kind == "expired":
                line.update(
                    response=None,
                    error={
                        "code": "batch_expired",
                        "message": "not executed before the completion window expired",
                    },
                )
            else:
                status = 400 if kind == "invalid" else 500
                line.update(
                    response={
                        "status_code": status,
                        "request_id": "r",
                        "body": self._error(status, payload),
                    },
                    error=None,
                )
            lines.append(json.dumps(line))
        return ("\n".join(lines) + "\n").encode()

    async def _batch_route(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        if path == "/v1/files" and method == "POST":
            body = await read_body(receive)
            try:
                content = _multipart_file(body, _header(scope, "content-type"))
            except ValueError as exc:
                await send_json(send, 400, self._error(400, str(exc)))
                return
            with self.batch.batch_stats.lock:
                self.batch.batch_stats.files_uploaded += 1
            await send_json(send, 200, self._file(content, "batch"))
        elif re.fullmatch(r"/v1/files/[\w-]+/content", path) and method == "GET":
            file_id = path.split("/")[3]
            if file_id not in self.files:
                await send_json(send, 404, self._error(404, f"no file {file_id}"))
                return
            await send_bytes(send, 200, self.files[file_id])
        elif path == "/v1/batches" and method == "POST":
            body = json.loads(await read_body(receive))
            content = self.files.get(body.get("input_file_id", ""))
            if content is None:
                await send_json(send, 400, self._error(400, "unknown input_file_id"))
                return
            items = []
            for line in content.decode().splitlines():
                if line.strip():
                    row = json.loads(line)
                    req = row["body"]
                    json_mode = (req.get("response_format") or {}).get("type") == "json_object"
                    items.append(
                        _Item(
                            custom_id=row["custom_id"],
                            messages=req["messages"],
                            model=req["model"],
                            json_mode=json_mode,
                        )
                    )
            batch = self.batch.create(items, "batch_")
            batch.input_file_id = body["input_file_id"]
            batch.metadata = body.get("metadata") or {}
            await send_json(send, 200, self._batch_json(batch))
        elif path == "/v1/batches" and method == "GET":  # newest first, one page
            data = [self._batch_json(b) for b in reversed(self.batch.batches.values())]
            await send_json(send, 200, {"object": "list", "data": data, "has_more": False,
                                        "first_id": data[0]["id"] if data else None,
                                        "last_id": data[-1]["id"] if data else None})  # fmt: skip
        elif re.fullmatch(r"/v1/batches/[\w-]+", path) and method == "GET":
            batch = self.batch.batches.get(path.rsplit("/", 1)[1])
            if batch is None:
                await send_json(send, 404, self._error(404, "no such batch"))
                return
            self.batch.poll(batch, self)
            await send_json(send, 200, self._batch_json(batch))
        else:
            await send_json(send, 404, self._error(404, f"no route {method} {path}"))


class AnthropicBatchDouble(AnthropicDouble):
    def __init__(self, script: Script | None = None, behaviour: BatchBehaviour | None = None):
        super().__init__(script)
        self.batch = BatchEngine(behaviour)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/messages/batches"):
            await self._batch_route(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def _batch_json(self, batch: _Batch, scope: Scope) -> dict[str, Any]:
        counts = Counter(kind for kind, _ in batch.results.values())
        host, port = scope["server"]
        stamp = "2026-01-01T00:00:00Z"
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": "ended" if batch.ended else "in_progress",
            "created_at": stamp,
            "expires_at": "2026-01-02T00:00:00Z",
            "ended_at": stamp if batch.ended else None,
            "results_url": f"http://{host}:{port}/v1/messages/batches/{batch.id}/results"
            if batch.ended
            else None,
            "request_counts": {
                "processing": 0 if batch.ended else len(batch.items),
                "succeeded": counts["ok"],
                "errored": counts["failed"] + counts["invalid"],
                "canceled": 0,
                "expired": counts["expired"],
            },
        }

    def _result_line(self, custom_id: str, kind: str, payload: Any, model: str) -> dict[str, Any]:
        if kind == "ok":
            reply, prompt_tokens, completion_tokens = payload
            message = self._render(reply, prompt_tokens, completion_tokens, model)
            return {"custom_id": custom_id, "result": {"type": "succeeded", "message": message}}
        if kind == "expired":
            return {"custom_id": custom_id, "result": {"type": "expired"}}
        err_type = "invalid_request_error" if kind == "invalid" else "api_error"
        return {
            "custom_id": custom_id,
            "result": {
                "type": "errored",
                "error": {"type": "error", "error": {"type": err_type, "message": payload}},
            },
        }

    async def _batch_route(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        if path == "/v1/messages/batches" and method == "POST":
            body = json.loads(await read_body(receive))
            items = []
            for req in body["requests"]:
                params = req["params"]
                messages = list(params["messages"])
                if params.get("system"):
                    messages.insert(0, {"role": "system", "content": params["system"]})
                items.append(
                    _Item(custom_id=req["custom_id"], messages=messages, model=params["model"])
                )
            batch = self.batch.create(items, "msgbatch_")
            await send_json(send, 200, self._batch_json(batch, scope))
            return
        match = re.fullmatch(r"/v1/messages/batches/([\w-]+)(/results)?", path)
        batch = self.batch.batches.get(match.group(1)) if match else None
        if batch is None or method != "GET":
            await send_json(send, 404, self._error(404, f"no route {method} {path}"))
        elif match and match.group(2):
            if not batch.ended:
                await send_json(send, 400, self._error(400, "batch has not ended"))
                return
            model = {i.custom_id: i.model for i in batch.items}
            lines = [
                json.dumps(self._result_line(c, kind, payload, model[c]))
                for c, (kind, payload) in batch.results.items()
            ]
            await send_bytes(
                send,
                200,
                ("\n".join(lines) + "\n").encode(),
                {"content-type": "application/binary"},
            )
        else:
            self.batch.poll(batch, self)
            await send_json(send, 200, self._batch_json(batch, scope))


class OpenAIBatchServer(ServerThread):
    """The OpenAI batch double in a thread; ``base_url`` ends in ``/v1``."""

    url_suffix = "/v1"

    def __init__(
        self, script: Script | None = None, behaviour: BatchBehaviour | None = None, port: int = 0
    ):
        super().__init__(OpenAIBatchDouble(script, behaviour), port)

    @property
    def batch(self) -> BatchEngine:
        return self.app.batch  # type: ignore[attr-defined]


class AnthropicBatchServer(ServerThread):
    """The Anthropic batch double in a thread (``base_url`` without ``/v1``)."""

    def __init__(
        self, script: Script | None = None, behaviour: BatchBehaviour | None = None, port: int = 0
    ):
        super().__init__(AnthropicBatchDouble(script, behaviour), port)

    @property
    def batch(self) -> BatchEngine:
        return self.app.batch  # type: ignore[attr-defined]
