"""A test double of the Anthropic Messages API (``POST /v1/messages``,
``GET /v1/models/{id}``), sharing the script, faults and counts of
:mod:`winnow.testing.llm_server`. NOT a model: scripted or echoed answers only.

Point ``anthropic.AsyncAnthropic(base_url=server.base_url)`` at it (no ``/v1`` suffix:
the SDK adds it). A ``system`` prompt is counted as a leading ``system`` message, so
``stats.count_for(request.messages)`` works the same as with the OpenAI double.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from winnow.testing.llm_server import (
    ChatDouble,
    Receive,
    Reply,
    Script,
    Send,
    ServerThread,
    body_key,
    read_body,
    send_json,
)


class AnthropicDouble(ChatDouble):
    async def route(self, method: str, path: str, receive: Receive, send: Send) -> None:
        if path == "/v1/messages" and method == "POST":
            try:
                body = json.loads(await read_body(receive))
                messages: list[dict[str, Any]] = list(body["messages"])
                model = body["model"]
                int(body["max_tokens"])
            except (ValueError, KeyError, TypeError):
                await send_json(send, 400, self._error(400, "invalid request body"))
                return
            system = body.get("system")
            if isinstance(system, list):
                system = "".join(b.get("text", "") for b in system if isinstance(b, dict))
            if system:
                messages.insert(0, {"role": "system", "content": system})
            await self.serve_chat(
                send, messages, model, False, self._render, self._error, body_key(body),
                int(body["max_tokens"]),
            )  # fmt: skip
        elif path.startswith("/v1/models/") and method == "GET":
            with self.stats._lock:
                self.stats.model_requests += 1
            model = path[len("/v1/models/") :]
            if model in self.script.models:
                await send_json(
                    send,
                    200,
                    {
                        "id": model,
                        "type": "model",
                        "display_name": model,
                        "created_at": "2025-01-01T00:00:00Z",
                    },
                )
            else:
                await send_json(send, 404, self._error(404, f"model: {model}"))
        else:
            await send_json(send, 404, self._error(404, f"no route {method} {path}"))

    @staticmethod
    def _error(status: int, message: str) -> dict[str, Any]:
        kind = {
            400: "invalid_request_error",
            404: "not_found_error",
            429: "rate_limit_error",
            529: "overloaded_error",
        }.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    @staticmethod
    def quota_headers(state: dict[str, tuple[float, float, float]]) -> dict[str, str]:
        """Anthropic's ``anthropic-ratelimit-*`` headers; the reset is an RFC 3339 time."""
        headers = {}
        now = time.time()
        for kind, (limit, remaining, full_in) in state.items():
            reset = datetime.fromtimestamp(now + full_in, UTC).isoformat(timespec="milliseconds")
            headers[f"anthropic-ratelimit-{kind}-limit"] = f"{limit:g}"
            headers[f"anthropic-ratelimit-{kind}-remaining"] = f"{remaining:g}"
            headers[f"anthropic-ratelimit-{kind}-reset"] = reset.replace("+00:00", "Z")
        return headers

    @staticmethod
    def _render(reply: Reply, prompt_tokens: int, completion_tokens: int, model: str) -> dict:
        stop = {"stop": "end_turn", "length": "max_tokens"}.get(reply.finish_reason, "end_turn")
        return {
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": reply.text}],
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": prompt_tokens, "output_tokens": completion_tokens},
        }


class AnthropicTestServer(ServerThread):
    """The Anthropic double in a thread. ``base_url`` has no ``/v1`` (the SDK adds it)."""

    url_suffix = ""

    def __init__(self, script: Script | None = None, port: int = 0) -> None:
        super().__init__(AnthropicDouble(script), port)
