"""Adapter for the OpenAI API and any OpenAI-compatible server (vLLM, Ollama, the
llama.cpp server, ...) through the official ``openai.AsyncOpenAI`` SDK.

The SDK's own retries are off (``max_retries=0``): the client above decides when to
retry, so a 429 reaches the shared limiter instead of being retried blindly in here.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlparse

import openai

from tasks.llm.base import (
    ChatRequest,
    Completion,
    ConfigError,
    Logprobs,
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
from tasks.llm.ratelimits import read_limits, retry_after
from tasks.llm.secrets import api_key

try:  # the openai SDK's HTTP layer since 3.x; httpx before
    from httpx2 import Response as RawResponse
except ImportError:  # pragma: no cover - older SDKs
    from httpx import Response as RawResponse

DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
DUMMY_KEY = "not-needed"  # OpenAI-compatible servers mostly ignore the key; the SDK wants one
CHECK_TIMEOUT_S = 30.0


def validate_url(url: str) -> None:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"bad base_url {url!r}: expected http(s)://host[:port][/path]")


def http_client() -> openai.DefaultAioHttpClient | None:
    """aiohttp as the SDK's HTTP transport when it is installed (the ``openai[aiohttp]``
    extra). It takes about half the CPU per request of the default HTTPX2 transport, and
    at high concurrency on a small machine that CPU, not the server, bounds throughput
    (``benchmarks/peers.py``). Errors still come back as the SDK's exception types."""
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return None
    return openai.DefaultAioHttpClient()


class OpenAIProvider:
    """``kind="openai"``: api.openai.com (or ``base_url``), key from ``OPENAI_API_KEY``.
    ``kind="openai-compatible"``: ``base_url`` required, key optional."""

    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec
        self._kind = spec.kind
        self._model = spec.model
        self._client: openai.AsyncOpenAI | None = None
        # Set when the server refused a request for asking logprobs: asked no more.
        self._logprobs_refused = False

    @property
    def name(self) -> str:
        return self._kind

    @property
    def model(self) -> str:
        return self._model

    def _api_key(self) -> str:
        if self._kind == "openai":
            key = api_key(self.spec, "OPENAI_API_KEY")
            if not key:
                env = self.spec.api_key_env or "OPENAI_API_KEY"
                raise ConfigError(f"no OpenAI API key: set {env} or name a Secret block")
            return key
        return api_key(self.spec, None) or DUMMY_KEY

    def _sdk(self) -> openai.AsyncOpenAI:
        if self._client is None:
            spec = self.spec
            if self._kind == "openai-compatible" and not spec.base_url:
                raise ConfigError("provider openai-compatible needs a base_url")
            if spec.base_url:
                validate_url(spec.base_url)
            self._client = openai.AsyncOpenAI(
                api_key=self._api_key(),
                base_url=spec.base_url or None,
                max_retries=0,
                timeout=spec.timeout_s,
                http_client=http_client(),
            )
        return self._client

    async def check(self) -> None:
        sdk = self._sdk()
        where = self.spec.base_url or "api.openai.com"
        if not self._model:
            if self._kind == "openai":
                self._model = DEFAULT_OPENAI_MODEL
            else:
                models = await self._list_models(where)
                if not models:
                    raise ConfigError(f"{where} serves no model; name one with --model")
                self._model = models[0]
        try:
            await sdk.with_options(
                timeout=min(self.spec.timeout_s, CHECK_TIMEOUT_S)
            ).models.retrieve(self._model)
            return
        except openai.NotFoundError:
            pass  # some servers lack GET /models/{id}: look in the list instead
        except openai.AuthenticationError as exc:
            raise ConfigError(f"{where} rejected the API key: {exc}") from exc
        except openai.APIConnectionError as exc:
            raise ConfigError(
                why_unreachable(where, exc, min(self.spec.timeout_s, CHECK_TIMEOUT_S))
            ) from exc
        except openai.APIStatusError as exc:
            if exc.status_code not in (400, 405, 501):
                raise ConfigError(
                    f"{where} answered {exc.status_code} to a model check: {exc}"
                ) from exc
        models = await self._list_models(where)
        if self._model not in models:
            shown = ", ".join(models[:20]) or "none"
            raise ConfigError(f"unknown model {self._model!r} at {where}; available: {shown}")

    async def _list_models(self, where: str) -> list[str]:
        sdk = self._sdk().with_options(timeout=min(self.spec.timeout_s, CHECK_TIMEOUT_S))
        try:
            page = await sdk.models.list()
            return [m.id for m in page.data]
        except openai.AuthenticationError as exc:
            raise ConfigError(f"{where} rejected the API key: {exc}") from exc
        except openai.APIConnectionError as exc:
            raise ConfigError(
                why_unreachable(where, exc, min(self.spec.timeout_s, CHECK_TIMEOUT_S))
            ) from exc
        except openai.APIStatusError as exc:
            hint = (
                " (is the base_url right? it often ends in /v1)" if exc.status_code == 404 else ""
            )
            raise ConfigError(
                f"{where} answered {exc.status_code} listing models{hint}: {exc}"
            ) from exc
        except ValueError as exc:  # not JSON: probably not an OpenAI-compatible server
            raise ConfigError(f"{where} is not an OpenAI-compatible API: {exc}") from exc

    def _arguments(self, request: ChatRequest) -> dict[str, Any]:
        p = request.params
        args: dict[str, Any] = {
            "model": self._model,
            "messages": [m.model_dump() for m in request.messages],
            "temperature": p.temperature,
            "top_p": p.top_p,
        }
        # api.openai.com deprecated max_tokens; other servers may only know max_tokens.
        args["max_completion_tokens" if self._kind == "openai" else "max_tokens"] = p.max_tokens
        if p.seed is not None:
            args["seed"] = p.seed
        if p.stop:
            args["stop"] = p.stop
        if p.json_mode:
            args["response_format"] = {"type": "json_object"}
        if self.spec.logprobs and not self._logprobs_refused:
            args["logprobs"] = True  # the answer's token log-probabilities, same request
        return args

    async def complete(self, request: ChatRequest) -> Completion:
        """One request. A model or server that refuses ``logprobs`` (a 400 naming it:
        reasoning models, some servers) is asked again without, and never again."""
        try:
            return await self._complete(request)
        except PermanentError as exc:
            asked = self.spec.logprobs and not self._logprobs_refused
            if not asked or "logprob" not in str(exc).lower():
                raise
            self._logprobs_refused = True
        return await self._complete(request)

    async def _complete(self, request: ChatRequest) -> Completion:
        try:
            # The SDK's generic POST with the raw response: our arguments are plain JSON
            # already (``create`` walks them against its TypedDicts first, a quarter of
            # the client's CPU per request), and the headers carry the quota the limiter
            # paces by. Errors are the SDK's, as with ``create``.
            response = await self._sdk().post(
                "/chat/completions", body=self._arguments(request), cast_to=RawResponse
            )
            body = response.json()
        except openai.RateLimitError as exc:
            code = _error_code(exc)
            if code == "insufficient_quota":  # out of credit: waiting will not help
                raise PermanentError(f"insufficient quota: {exc}") from exc
            headers = exc.response.headers
            raise RateLimited(str(exc), retry_after(headers), read_limits(headers)) from exc
        except openai.APIConnectionError as exc:  # a timeout too (APITimeoutError)
            if no_connection(exc):  # refused: the aiohttp transport reports it as a timeout
                raise Unreachable(f"connection refused: {exc.__cause__}") from exc
            if isinstance(exc, openai.APITimeoutError):
                raise TransientError(f"timed out after {self.spec.timeout_s:g}s") from exc
            raise TransientError(f"connection error: {exc.__cause__ or exc}") from exc
        except openai.APIStatusError as exc:
            if exc.status_code in (503, 529):
                wait = retry_after(exc.response.headers)
                raise Overloaded(f"HTTP {exc.status_code}: {exc.message}", wait) from exc
            if exc.status_code >= 500 or exc.status_code in (408, 409):
                raise TransientError(f"HTTP {exc.status_code}: {exc.message}") from exc
            raise PermanentError(f"HTTP {exc.status_code}: {exc.message}") from exc
        except (ValueError, json.JSONDecodeError) as exc:  # a 200 whose body is not JSON
            raise TransientError(f"malformed response body: {exc}") from exc
        completion = _completion(body)
        completion.limits = read_limits(response.headers)
        return completion

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _error_code(exc: openai.APIStatusError) -> str | None:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            code = inner.get("code") or inner.get("type")
            return str(code) if code else None
    return None


def _completion(body: Any) -> Completion:
    """The text, usage and finish reason of a chat completion body (a dict)."""
    if not isinstance(body, dict):
        raise TransientError("malformed response: not a JSON object")
    choices = body.get("choices")
    if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise TransientError("malformed response: no choices")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise TransientError("malformed response: no message")
    text = message.get("content")
    if text is None:
        refusal = message.get("refusal")
        if refusal:
            raise PermanentError(f"the model refused: {refusal}")
        text = ""
    usage = body.get("usage") or {}
    return Completion(
        text=str(text),
        usage=Usage(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        ),
        finish_reason=choice.get("finish_reason"),
        logprobs=chat_logprobs(choice.get("logprobs")),
    )


def chat_logprobs(block: Any) -> Logprobs | None:
    """The summary of a choice's ``logprobs`` (``{"content": [{"token", "logprob"}...]}``
    in the chat API; absent or null when the server does not return them)."""
    if not isinstance(block, dict):
        return None
    content = block.get("content")
    if not isinstance(content, list):
        return None
    values = []
    for item in content:
        value = item.get("logprob") if isinstance(item, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            values.append(float(value))
    return Logprobs.of(values)
