"""Adapter for the Anthropic Messages API through the official ``anthropic.AsyncAnthropic``
SDK (its own retries off: the client above decides).

Mapping: ``system`` messages become the ``system`` parameter; ``stop`` becomes
``stop_sequences``. The current Messages API (SDK 2.x) takes no sampling parameters:
``temperature``, ``top_p`` and ``seed`` are not sent (the model samples at its own
default) but stay part of the journal key, so best-of-N draws remain distinct requests.
The API's JSON output format needs a schema, which a provider does not get, so
``json_mode`` adds a system instruction to answer with one JSON object; the
structured-output layer validates and re-asks either way.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic

from tasks.llm.base import (
    ChatRequest,
    Completion,
    ConfigError,
    Overloaded,
    PermanentError,
    ProviderSpec,
    RateLimited,
    TransientError,
    Unreachable,
    Usage,
    no_connection,
    why_unreachable,
)
from tasks.llm.openai_provider import CHECK_TIMEOUT_S, validate_url
from tasks.llm.ratelimits import read_limits, retry_after
from tasks.llm.secrets import anthropic_key

DEFAULT_ANTHROPIC_MODEL = "claude-haiku-4-5"
JSON_INSTRUCTION = "Answer with a single JSON object and nothing else: no prose, no code fence."


class AnthropicProvider:
    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec
        self._model = spec.model or DEFAULT_ANTHROPIC_MODEL
        self._client: anthropic.AsyncAnthropic | None = None

    @property
    def name(self) -> str:
        return "anthropic"

    @property
    def model(self) -> str:
        return self._model

    def _sdk(self) -> anthropic.AsyncAnthropic:
        if self._client is None:
            key = anthropic_key(self.spec)
            if self.spec.base_url:
                validate_url(self.spec.base_url)
            self._client = anthropic.AsyncAnthropic(
                api_key=key,
                base_url=self.spec.base_url or None,
                max_retries=0,
                timeout=self.spec.timeout_s,
            )
        return self._client

    async def check(self) -> None:
        sdk = self._sdk().with_options(timeout=min(self.spec.timeout_s, CHECK_TIMEOUT_S))
        where = self.spec.base_url or "api.anthropic.com"
        try:
            await sdk.models.retrieve(self._model)
        except anthropic.NotFoundError as exc:
            raise ConfigError(f"unknown Anthropic model {self._model!r} at {where}") from exc
        except anthropic.AuthenticationError as exc:
            raise ConfigError(f"{where} rejected the API key: {exc}") from exc
        except anthropic.APIConnectionError as exc:
            raise ConfigError(
                why_unreachable(where, exc, min(self.spec.timeout_s, CHECK_TIMEOUT_S))
            ) from exc
        except anthropic.APIStatusError as exc:
            raise ConfigError(
                f"{where} answered {exc.status_code} to a model check: {exc}"
            ) from exc
        except ValueError as exc:
            raise ConfigError(f"{where} is not the Anthropic API: {exc}") from exc

    def _arguments(self, request: ChatRequest) -> dict[str, Any]:
        p = request.params
        system = [m.content for m in request.messages if m.role == "system"]
        if p.json_mode:
            system.append(JSON_INSTRUCTION)
        args: dict[str, Any] = {
            "model": self._model,
            "max_tokens": p.max_tokens,
            "messages": [
                {"role": m.role, "content": m.content}
                for m in request.messages
                if m.role != "system"
            ],
        }
        if system:
            args["system"] = "\n\n".join(system)
        if p.stop:
            args["stop_sequences"] = p.stop
        return args

    async def complete(self, request: ChatRequest) -> Completion:
        try:
            # The raw response: its headers carry the quota the limiter paces by.
            raw = await self._sdk().messages.with_raw_response.create(**self._arguments(request))
            message = await raw.parse()
        except anthropic.RateLimitError as exc:
            headers = exc.response.headers
            raise RateLimited(str(exc), retry_after(headers), read_limits(headers)) from exc
        except anthropic.APITimeoutError as exc:
            raise TransientError(f"timed out after {self.spec.timeout_s:g}s") from exc
        except anthropic.APIConnectionError as exc:
            if no_connection(exc):
                raise Unreachable(f"connection refused: {exc.__cause__}") from exc
            raise TransientError(f"connection error: {exc.__cause__ or exc}") from exc
        except anthropic.APIResponseValidationError as exc:
            raise TransientError(f"malformed response: {exc}") from exc
        except anthropic.APIStatusError as exc:
            if exc.status_code in (503, 529):  # 529: overloaded_error
                wait = retry_after(exc.response.headers)
                raise Overloaded(f"HTTP {exc.status_code}: {exc.message}", wait) from exc
            if exc.status_code >= 500 or exc.status_code in (408, 409):
                raise TransientError(f"HTTP {exc.status_code}: {exc.message}") from exc
            raise PermanentError(f"HTTP {exc.status_code}: {exc.message}") from exc
        except (ValueError, json.JSONDecodeError) as exc:
            raise TransientError(f"malformed response body: {exc}") from exc
        blocks = getattr(message, "content", None)
        if blocks is None:
            raise TransientError("malformed response: no content")
        text = "".join(getattr(b, "text", "") for b in blocks if getattr(b, "type", "") == "text")
        usage = getattr(message, "usage", None)
        return Completion(
            text=text,
            usage=Usage(
                prompt_tokens=getattr(usage, "input_tokens", 0) or 0,
                completion_tokens=getattr(usage, "output_tokens", 0) or 0,
            ),
            finish_reason=getattr(message, "stop_reason", None),
            limits=read_limits(raw.headers),
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
