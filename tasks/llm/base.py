"""The small interface every LLM provider adapter implements, and the values it trades in.

A *provider* turns one ``ChatRequest`` into one ``Completion`` or raises one of the
errors below. Everything else (the request journal, concurrency, retries, structured
output, prices) lives in ``tasks.llm.client.LLMClient`` above the adapters, so it is
written once for every provider.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from tasks.llm.ratelimits import RateLimits

ProviderKind = Literal["local", "openai", "anthropic", "openai-compatible"]
PROVIDER_KINDS: tuple[str, ...] = ("local", "openai", "anthropic", "openai-compatible")


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class GenerationParams(BaseModel):
    """Sampling parameters. All of them are part of the journal key."""

    temperature: float = Field(0.7, ge=0.0, le=2.0)
    max_tokens: int = Field(512, ge=1, le=32768)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = None
    json_mode: bool = False
    stop: list[str] | None = None


class ChatRequest(BaseModel):
    messages: list[Message]
    params: GenerationParams = Field(default_factory=GenerationParams)
    template: str = ""
    template_version: str = ""
    # Index of this draw when one prompt is sampled several times (best-of-N): two draws
    # of the same prompt are two different requests, so two journal entries.
    sample: int = 0


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Logprobs(BaseModel):
    """How probable the model found its own answer, from the per-token log-probabilities a
    provider returned with it (no extra request): their mean over ``tokens`` tokens. The
    perplexity is ``exp(-mean_logprob)``; 1 means the model was certain of every token."""

    mean_logprob: float
    tokens: int = Field(ge=1)

    @property
    def perplexity(self) -> float:
        return math.exp(-self.mean_logprob)

    @classmethod
    def of(cls, token_logprobs: list[float]) -> Logprobs | None:
        """The summary of a list of token log-probabilities (``None`` for none)."""
        values = [float(v) for v in token_logprobs if v is not None and math.isfinite(v)]
        if not values:
            return None
        return cls(mean_logprob=sum(values) / len(values), tokens=len(values))


class Completion(BaseModel):
    """What a provider adapter returns for one request."""

    text: str
    usage: Usage = Field(default_factory=Usage)
    finish_reason: str | None = None
    limits: RateLimits | None = None  # the quota the answer's headers reported
    logprobs: Logprobs | None = None  # where the provider returned token log-probabilities


class ChatResult(BaseModel):
    """What the client hands back for one request: never an exception, never None."""

    key: str
    text: str | None = None
    error: str | None = None
    usage: Usage = Field(default_factory=Usage)
    latency_s: float = 0.0
    cost_usd: float = 0.0
    cached: bool = False  # answered by the journal, no request made
    provider: str = ""
    model: str = ""
    finish_reason: str | None = None
    attempts: int = 0  # sends made for this result now (retries included); 0 when cached
    logprobs: Logprobs | None = None  # the answer's mean token log-probability, if returned

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


class ProviderSpec(BaseModel):
    """Which provider and model, and how to reach it. Checked before any request."""

    kind: ProviderKind = "local"
    model: str = ""  # empty: the provider's default (the embedded model for `local`)
    base_url: str | None = None
    api_key_env: str | None = None  # name of the environment variable holding the key
    api_key_secret: str | None = None  # name of a Prefect Secret block holding the key
    timeout_s: float = Field(120.0, gt=0)
    max_concurrency: int = Field(32, ge=1, le=4096)
    max_retries: int = Field(6, ge=0, le=50)
    # How long requests wait for a server that refuses connections (stopped, restarting)
    # before the run stops with EndpointDown; time spent waiting uses no retry budget.
    max_outage_s: float = Field(120.0, gt=0, le=86400)
    # Ask for the answer's token log-probabilities where the provider can return them
    # (the embedded model, OpenAI and OpenAI-compatible servers): recorded in the journal
    # and in provenance at no extra request. Off for a server that refuses the option.
    logprobs: bool = True


# --- errors -----------------------------------------------------------------------------


class LLMError(Exception):
    """Base class of provider errors."""


class ConfigError(LLMError):
    """Bad configuration found before spending anything: missing key, unknown model,
    unreachable or malformed URL. Raised at once, never retried."""


class RateLimited(LLMError):
    """A 429. ``limits`` (from its headers) tell a spent quota from any other refusal."""

    def __init__(
        self, message: str, retry_after: float | None = None, limits: RateLimits | None = None
    ):
        super().__init__(message)
        self.retry_after = retry_after
        self.limits = limits


class TransientError(LLMError):
    """5xx, timeouts, dropped connections, truncated bodies: worth retrying."""


class Overloaded(TransientError):
    """503 or Anthropic's 529 ``overloaded_error``: the server is over capacity, so the
    endpoint's concurrency backs off as well as the request being retried."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Unreachable(TransientError):
    """No connection could be made (refused, no route): the server is down, not the
    request at fault. Retried while the endpoint's outage lasts less than
    ``ProviderSpec.max_outage_s``."""


_NO_CONNECTION = {"ConnectError", "ClientConnectorError", "ConnectionRefusedError"}


def no_connection(exc: BaseException) -> bool:
    """Whether an SDK error means no connection was made at all (refused, no route), as
    opposed to one dropped mid-answer. The SDKs wrap their HTTP library's errors: httpx
    (or its fork httpx2) raises ``ConnectError``; through the aiohttp transport a refused
    connection arrives as a *timeout* (``ConnectTimeout`` caused by aiohttp's
    ``ClientConnectorError`` caused by ``ConnectionRefusedError``). So the whole chain of
    causes is searched, by class name."""
    seen: set[int] = set()
    current: BaseException | None = exc.__cause__ or exc.__context__
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if any(c.__name__ in _NO_CONNECTION for c in type(current).__mro__):
            return True
        current = current.__cause__ or current.__context__
    return False


def why_unreachable(where: str, exc: BaseException, timeout_s: float) -> str:
    """One line for a failed connection, with its real cause: a refused connection (the
    SDKs may report it as a timeout, see ``no_connection``) or a server that did not
    answer in time."""
    if no_connection(exc):
        return f"cannot reach {where}: connection refused (is the server running at that URL?)"
    if "Timeout" in type(exc).__name__:
        return f"cannot reach {where}: no answer within {timeout_s:g} s"
    cause = exc.__cause__ or exc.__context__
    return f"cannot reach {where}: {cause or exc}"


class EndpointDown(LLMError):
    """The endpoint refused connections for longer than ``max_outage_s``: the run stops
    (every answer so far is journaled, so running it again resumes)."""


class PermanentError(LLMError):
    """4xx other than 429 on one request (e.g. context too long): not retried."""


class Provider(Protocol):
    spec: ProviderSpec

    @property
    def name(self) -> str:
        """Provider kind as recorded in the journal (e.g. ``openai-compatible``)."""
        ...

    @property
    def model(self) -> str:
        """Resolved model name as recorded in the journal."""
        ...

    async def check(self) -> None:
        """Raise ConfigError unless a request could succeed (key present, model known,
        URL answers). Called once before any other request."""
        ...

    async def complete(self, request: ChatRequest) -> Completion:
        """One request. Raises RateLimited / TransientError / PermanentError."""
        ...

    async def aclose(self) -> None: ...


def request_key(provider: str, model: str, request: ChatRequest) -> str:
    """The journal key: provider, model, messages, generation parameters, prompt template
    and version, and the sample index. Not the parser: fixing a parser reuses answers."""
    payload: dict[str, Any] = {
        "provider": provider,
        "model": model,
        "messages": [m.model_dump() for m in request.messages],
        "params": request.params.model_dump(),
        "template": request.template,
        "template_version": request.template_version,
        "sample": request.sample,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()
