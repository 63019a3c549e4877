"""A test double of an OpenAI-compatible LLM server, for tests and benchmarks.

This is NOT a model: it answers ``POST /v1/chat/completions`` from a script (regex rules
on the messages -> responses in order), or with a deterministic echo. It exists so the
real SDK code path (``openai.AsyncOpenAI`` over HTTP) can be tested offline, including
the unpleasant parts: 429 with Retry-After, 500s, hangs past the client's timeout,
malformed JSON bodies and truncated bodies, injected by script or by seeded probability.

It counts every chat request (in total, per message hash, and per request: the whole body,
so messages, model and sampling parameters, seed included, which tells apart the N draws
of one prompt) and every request it answered, so tests can prove that a journaled request
is never sent twice. The counts are on ``server.stats`` in-process and at ``GET /_stats``
over HTTP.

In-process::

    with LLMTestServer(Script(latency_ms=50)) as server:
        client = make_client("openai-compatible", model="test-model", base_url=server.base_url)

As a subprocess (prints its base URL on the first line of stdout)::

    python -m winnow.testing --port 0 --latency-ms 200 --concurrency 64

A script file (``--script``) is a JSON :class:`Script`, for example::

    {"latency_ms": 200,
     "rules": [{"pattern": "judge", "replies": ["!500", "{\"ok\": true}"], "then": "last"}],
     "faults": {"p_429": 0.1, "seed": 7}, "retry_after_s": 0.5}

(a reply ``"!500"``, ``"!429"``, ``"!hang"``, ``"!malformed"`` or ``"!truncated"`` is
that fault; ``POST /_script`` replaces the script of a running server, ``POST /_reset``
zeroes the counts; ``--api anthropic`` serves the Anthropic Messages API instead.)

The app is plain ASGI on uvicorn (no framework in the hot path) so it sustains well over
a thousand requests per second on one core.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import re
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel, Field

Fault = Literal["429", "500", "503", "529", "hang", "malformed", "truncated"]
FAULTS: tuple[str, ...] = ("429", "500", "503", "529", "hang", "malformed", "truncated")
# Refusals a server sends at once, before any work (and before the latency): a rate
# limit, or an overload (503; Anthropic's 529 overloaded_error).
IMMEDIATE: tuple[str, ...] = ("429", "503", "529")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


# --- the script ------------------------------------------------------------------------


class Reply(BaseModel):
    """One scripted answer: a text, or a fault (``text`` ignored then)."""

    text: str = ""
    fault: Fault | None = None
    finish_reason: str = "stop"

    @classmethod
    def parse(cls, value: str | dict[str, Any] | Reply) -> Reply:
        """Shorthand: a string ``"!500"`` / ``"!429"`` / ``"!hang"`` … is a fault, any
        other string is the text to answer."""
        if isinstance(value, Reply):
            return value
        if isinstance(value, dict):
            return cls.model_validate(value)
        if value.startswith("!") and value[1:] in FAULTS:
            return cls(fault=value[1:])  # type: ignore[arg-type]
        return cls(text=value)


class Rule(BaseModel):
    """Answer requests whose messages match ``pattern`` with ``replies`` in order.

    The pattern is searched (``re.search``, DOTALL) in the messages rendered as
    ``"role: content"`` lines. When the replies run out: ``then="cycle"`` starts again,
    ``then="last"`` repeats the last one.
    """

    pattern: str
    replies: list[str | Reply]
    then: Literal["cycle", "last"] = "cycle"


class Faults(BaseModel):
    """Faults drawn at random (seeded) for requests no rule answers with a fault."""

    p_429: float = Field(0.0, ge=0, le=1)
    p_500: float = Field(0.0, ge=0, le=1)
    p_503: float = Field(0.0, ge=0, le=1)
    p_529: float = Field(0.0, ge=0, le=1)
    p_hang: float = Field(0.0, ge=0, le=1)
    p_malformed: float = Field(0.0, ge=0, le=1)
    p_truncated: float = Field(0.0, ge=0, le=1)
    seed: int = 0


class Quota(BaseModel):
    """A hosted API's quota: requests and tokens per minute, each a token bucket refilled
    continuously at ``limit / 60`` per second and holding ``burst_s`` seconds of refill
    (hosted APIs enforce a per-minute limit over short windows). A request costs 1 of
    the first and its prompt tokens plus ``max_tokens`` of the second, charged when it
    arrives; one that does not fit is refused with a 429 whose
    headers say the bucket is spent. Every answer reports both buckets in the API's own
    headers (``x-ratelimit-*`` or ``anthropic-ratelimit-*``)."""

    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(None, gt=0)
    burst_s: float = Field(1.0, gt=0)


class Script(BaseModel):
    """Everything the server does. Loadable from JSON (``--script FILE``)."""

    models: list[str] = Field(default_factory=lambda: ["test-model"])
    rules: list[Rule] = Field(default_factory=list)
    # Faults for the first requests, in order, whatever their messages ("ok" = no fault).
    fault_sequence: list[str] = Field(default_factory=list)
    faults: Faults = Field(default_factory=Faults)
    latency_ms: float = Field(0.0, ge=0)
    # Each answer's latency is latency_ms x U(1 - jitter, 1 + jitter): a slow tail.
    latency_jitter: float = Field(0.0, ge=0, le=1)
    # Requests served at once; the rest wait (over_capacity="queue") or get 429.
    concurrency: int = Field(1024, ge=1)
    over_capacity: Literal["queue", "429"] = "queue"
    retry_after_s: float = Field(1.0, ge=0)
    hang_s: float = Field(3600.0, ge=0)
    # When set, API requests must carry this key (``Authorization: Bearer`` or
    # ``x-api-key``) or get 401: tests prove a key was really sent.
    api_key: str | None = None
    quota: Quota | None = None
    # Answer 400 to a chat request asking for logprobs, as some models (and servers) do.
    refuse_logprobs: bool = False


# --- the counts ------------------------------------------------------------------------


def message_hash(messages: list[dict[str, Any]]) -> str:
    """Hash of a request's messages (role and content only), as counted by the server."""
    canon = [{"role": m.get("role"), "content": _content_text(m.get("content"))} for m in messages]
    blob = json.dumps(canon, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def body_key(body: dict[str, Any]) -> str:
    """The identity of one request as the server sees it: its whole JSON body, canonical.
    A client sending the same request twice sends the same key."""
    blob = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class Stats:
    """Request counts; thread-safe reads via :meth:`snapshot`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.chat_requests = 0
            self.model_requests = 0
            self.by_hash: Counter[str] = Counter()
            self.by_request: Counter[str] = Counter()  # body_key -> requests received
            self.answered: Counter[str] = Counter()  # body_key -> successful answers sent
            self.faults: Counter[str] = Counter()
            # 429s by cause ("quota", "capacity", "scripted") and overloads ("503", "529")
            self.refusals: Counter[str] = Counter()
            self.pending = 0  # received and not yet finished (waiting for a slot included)
            self.in_flight = 0
            self.max_in_flight = 0
            self.completed = 0
            self.unauthorized = 0
            # wall-clock times (time.time()) of the first chat request and the last answer
            self.first_request_at: float | None = None
            self.last_answer_at: float | None = None

    def count_for(self, messages: list[dict[str, Any]] | list[Any]) -> int:
        """How many chat requests carried exactly these messages (dicts or pydantic)."""
        dicts = [m.model_dump() if hasattr(m, "model_dump") else m for m in messages]
        with self._lock:
            return self.by_hash[message_hash(dicts)]

    def duplicates(self) -> dict[str, int]:
        """Message hashes sent more than once."""
        with self._lock:
            return {h: n for h, n in self.by_hash.items() if n > 1}

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "chat_requests": self.chat_requests,
                "model_requests": self.model_requests,
                "completed": self.completed,
                "pending": self.pending,
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "unauthorized": self.unauthorized,
                "first_request_at": self.first_request_at,
                "last_answer_at": self.last_answer_at,
                "faults": dict(self.faults),
                "refusals": dict(self.refusals),
                "by_hash": dict(self.by_hash),
                "by_request": dict(self.by_request),
                "answered": dict(self.answered),
            }


# --- the app ---------------------------------------------------------------------------


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks: [{"type": "text", "text": ...}]
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return "" if content is None else str(content)


def render_messages(messages: list[dict[str, Any]]) -> str:
    return "\n".join(f"{m.get('role')}: {_content_text(m.get('content'))}" for m in messages)


def count_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: whitespace-separated words."""
    return len(text.split())


def quota_tokens(messages: list[dict[str, Any]], max_tokens: int) -> int:
    """What a request costs against a tokens-per-minute quota: its prompt tokens (as the
    answer's ``usage`` reports them) plus the completion it may take, as OpenAI counts."""
    return count_tokens(render_messages(messages)) + max(0, max_tokens)


class Bucket:
    """A token bucket: ``rate`` per second, ``capacity`` at most, full at the start."""

    def __init__(self, per_minute: float, burst_s: float) -> None:
        self.limit = per_minute
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_s)
        self.level = self.capacity
        self.stamp = time.monotonic()

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + self.rate * (now - self.stamp))
        self.stamp = now

    def wait_s(self, cost: float) -> float:
        """Seconds until ``cost`` fits (0 when it does now)."""
        return max(0.0, (min(cost, self.capacity) - self.level) / self.rate)

    def full_in_s(self) -> float:
        return max(0.0, (self.capacity - self.level) / self.rate)


class QuotaState:
    """The buckets of a :class:`Quota` and the headers that describe them."""

    def __init__(self, quota: Quota) -> None:
        self.lock = threading.Lock()
        self.buckets: dict[str, Bucket] = {}
        if quota.requests_per_minute:
            self.buckets["requests"] = Bucket(quota.requests_per_minute, quota.burst_s)
        if quota.tokens_per_minute:
            self.buckets["tokens"] = Bucket(quota.tokens_per_minute, quota.burst_s)

    def charge(self, tokens: int) -> float:
        """Charge one request; 0 when it fits, else the seconds until it would."""
        costs = {"requests": 1.0, "tokens": float(tokens)}
        with self.lock:
            now = time.monotonic()
            for bucket in self.buckets.values():
                bucket.refill(now)
            wait = max((b.wait_s(costs[k]) for k, b in self.buckets.items()), default=0.0)
            if wait > 0:
                for kind, bucket in self.buckets.items():
                    if bucket.wait_s(costs[kind]) > 0:
                        bucket.level = min(bucket.level, 0.0)  # what the headers will say
                return wait
            for kind, bucket in self.buckets.items():
                bucket.level -= costs[kind]
            return 0.0

    def snapshot(self) -> dict[str, tuple[float, float, float]]:
        """kind -> (limit per minute, remaining, seconds until full)."""
        with self.lock:
            return {
                k: (b.limit, max(0.0, math.floor(b.level)), b.full_in_s())
                for k, b in self.buckets.items()
            }


class ScriptEngine:
    """Chooses the reply for each request; shared by the OpenAI and Anthropic doubles."""

    def __init__(self, script: Script) -> None:
        self.set_script(script)

    def set_script(self, script: Script) -> None:
        self.script = script
        self.rules = [(re.compile(r.pattern, re.DOTALL), r) for r in script.rules]
        self.positions: Counter[int] = Counter()
        self.sequence_pos = 0
        self.rng = random.Random(script.faults.seed)
        self.lock = threading.Lock()
        self.semaphore: asyncio.Semaphore | None = None
        self.quota = QuotaState(script.quota) if script.quota else None

    def choose(self, messages: list[dict[str, Any]], json_mode: bool) -> Reply:
        with self.lock:
            if self.sequence_pos < len(self.script.fault_sequence):
                step = self.script.fault_sequence[self.sequence_pos]
                self.sequence_pos += 1
                if step in FAULTS:
                    return Reply(fault=step)  # type: ignore[arg-type]
            rendered = render_messages(messages)
            for index, (regex, rule) in enumerate(self.rules):
                if regex.search(rendered):
                    n = self.positions[index]
                    self.positions[index] += 1
                    if n >= len(rule.replies):
                        n = n % len(rule.replies) if rule.then == "cycle" else -1
                    reply = Reply.parse(rule.replies[n])
                    if reply.fault is None:
                        reply = self._random_fault() or reply
                    return reply
            return self._random_fault() or self._default(messages, json_mode)

    def latency_s(self) -> float:
        script = self.script
        if not script.latency_jitter:
            return script.latency_ms / 1000
        with self.lock:
            spread = self.rng.uniform(-script.latency_jitter, script.latency_jitter)
        return script.latency_ms * (1 + spread) / 1000

    def _random_fault(self) -> Reply | None:
        f = self.script.faults
        x = self.rng.random()
        for name, p in (
            ("429", f.p_429),
            ("500", f.p_500),
            ("503", f.p_503),
            ("529", f.p_529),
            ("hang", f.p_hang),
            ("malformed", f.p_malformed),
            ("truncated", f.p_truncated),
        ):
            if x < p:
                return Reply(fault=name)  # type: ignore[arg-type]
            x -= p
        return None

    @staticmethod
    def _default(messages: list[dict[str, Any]], json_mode: bool) -> Reply:
        last = next(
            (
                _content_text(m.get("content"))
                for m in reversed(messages)
                if m.get("role") == "user"
            ),
            "",
        )
        if json_mode:
            return Reply(text=json.dumps({"echo": last}))
        return Reply(text=f"echo: {last}")


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def send_json(send: Send, status: int, payload: Any, headers: dict[str, str] | None = None):
    body = json.dumps(payload).encode()
    await send_bytes(send, status, body, headers)


async def send_bytes(
    send: Send, status: int, body: bytes, headers: dict[str, str] | None = None
) -> None:
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class _Truncate(Exception):
    """Raised after a partial body so uvicorn drops the connection mid-response."""


class ChatDouble:
    """Shared request flow of the doubles: count, cap, fault, latency, answer.

    Subclasses say how to read a request and how to shape an answer or an error.
    """

    def __init__(self, script: Script | None = None) -> None:
        self.engine = ScriptEngine(script or Script())
        self.stats = Stats()

    @property
    def script(self) -> Script:
        return self.engine.script

    async def serve_chat(
        self,
        send: Send,
        messages: list[dict[str, Any]],
        model: str,
        json_mode: bool,
        render: Callable[[Reply, int, int, str], dict[str, Any]],
        error: Callable[[int, str], dict[str, Any]],
        key: str = "",
        max_tokens: int = 0,
    ) -> None:
        stats = self.stats
        with stats._lock:
            stats.chat_requests += 1
            stats.pending += 1
            if stats.first_request_at is None:
                stats.first_request_at = time.time()
            stats.by_hash[message_hash(messages)] += 1
            if key:
                stats.by_request[key] += 1
        try:
            await self._answer(send, messages, model, json_mode, render, error, key, max_tokens)
        finally:
            with stats._lock:
                stats.pending -= 1

    async def _answer(
        self,
        send: Send,
        messages: list[dict[str, Any]],
        model: str,
        json_mode: bool,
        render: Callable[[Reply, int, int, str], dict[str, Any]],
        error: Callable[[int, str], dict[str, Any]],
        key: str,
        max_tokens: int,
    ) -> None:
        script = self.engine.script
        stats = self.stats
        if model not in script.models:
            await send_json(send, 404, error(404, f"The model `{model}` does not exist"))
            return
        quota = self.engine.quota
        if quota is not None:
            wait = quota.charge(quota_tokens(messages, max_tokens))
            if wait > 0:
                await self._refuse(send, error, 429, "quota", "rate limit reached", wait)
                return
        if self.engine.semaphore is None:
            self.engine.semaphore = asyncio.Semaphore(script.concurrency)
        semaphore = self.engine.semaphore
        if script.over_capacity == "429" and semaphore.locked():
            await self._refuse(send, error, 429, "capacity", "over capacity")
            return
        reply = self.engine.choose(messages, json_mode)
        if reply.fault in IMMEDIATE:
            status = int(reply.fault)  # type: ignore[arg-type]
            why = "rate limited (scripted)" if status == 429 else "overloaded (scripted)"
            await self._refuse(send, error, status, "scripted" if status == 429 else "", why)
            return
        async with semaphore:
            with stats._lock:
                stats.in_flight += 1
                stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
            try:
                if reply.fault == "hang":
                    with stats._lock:
                        stats.faults["hang"] += 1
                    await asyncio.sleep(script.hang_s)
                    return
                if script.latency_ms:
                    await asyncio.sleep(self.engine.latency_s())
                if reply.fault == "500":
                    with stats._lock:
                        stats.faults["500"] += 1
                    await send_json(send, 500, error(500, "internal error (scripted)"))
                    return
                prompt_tokens = count_tokens(render_messages(messages))
                completion_tokens = count_tokens(reply.text)
                payload = render(reply, prompt_tokens, completion_tokens, model)
                body = json.dumps(payload).encode()
                if reply.fault == "malformed":
                    with stats._lock:
                        stats.faults["malformed"] += 1
                    await send_bytes(send, 200, body[: len(body) // 2] + b"<<garbage")
                    return
                if reply.fault == "truncated":
                    with stats._lock:
                        stats.faults["truncated"] += 1
                    head = [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ]
                    await send({"type": "http.response.start", "status": 200, "headers": head})
                    await send(
                        {
                            "type": "http.response.body",
                            "body": body[: len(body) // 2],
                            "more_body": True,
                        }
                    )
                    raise _Truncate
            finally:
                with stats._lock:
                    stats.in_flight -= 1
        # The answer leaves after its slot is free, as a real server frees a sequence
        # when generation ends: a client that sends its next request the moment it has
        # this answer must find the slot free (held across the send, a busy machine
        # turned that race into refusals no real server gives).
        await send_bytes(send, 200, body, self._quota_headers())
        with stats._lock:
            stats.completed += 1
            stats.last_answer_at = time.time()
            if key:
                stats.answered[key] += 1

    async def _refuse(
        self,
        send: Send,
        error: Callable[[int, str], dict],
        status: int,
        cause: str,
        why: str,
        retry_after: float | None = None,
    ) -> None:
        """A 429 (``cause``: quota, capacity, scripted) or an overload (503, 529), at once,
        with ``Retry-After`` (and ``retry-after-ms``) and the quota's headers."""
        with self.stats._lock:
            self.stats.faults[str(status)] += 1
            self.stats.refusals[cause or str(status)] += 1
        seconds = self.engine.script.retry_after_s if retry_after is None else retry_after
        headers = {
            "retry-after": str(max(1, math.ceil(seconds)) if retry_after else f"{seconds:g}"),
            "retry-after-ms": str(math.ceil(seconds * 1000)),
            **self._quota_headers(),
        }
        await send_json(send, status, error(status, why), headers)

    def _quota_headers(self) -> dict[str, str]:
        quota = self.engine.quota
        return self.quota_headers(quota.snapshot()) if quota is not None else {}

    @staticmethod
    def quota_headers(state: dict[str, tuple[float, float, float]]) -> dict[str, str]:
        """OpenAI's ``x-ratelimit-*`` headers (a double for another API overrides it)."""
        headers = {}
        for kind, (limit, remaining, full_in) in state.items():
            headers[f"x-ratelimit-limit-{kind}"] = f"{limit:g}"
            headers[f"x-ratelimit-remaining-{kind}"] = f"{remaining:g}"
            headers[f"x-ratelimit-reset-{kind}"] = f"{full_in:.3f}s"
        return headers

    async def serve_control(self, method: str, path: str, receive: Receive, send: Send) -> bool:
        """``GET /_stats``, ``POST /_reset`` (counts), ``POST /_script`` (replace the script)."""
        if path == "/_stats" and method == "GET":
            await send_json(send, 200, self.stats.snapshot())
        elif path == "/_reset" and method == "POST":
            self.stats.reset()
            await send_json(send, 200, {"ok": True})
        elif path == "/_script" and method == "POST":
            self.engine.set_script(Script.model_validate_json(await read_body(receive)))
            await send_json(send, 200, {"ok": True})
        else:
            return False
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if await self.serve_control(method, path, receive, send):
            return
        if not self._authorized(scope):
            with self.stats._lock:
                self.stats.unauthorized += 1
            await send_json(send, 401, self.auth_error())
            return
        await self.route(method, path, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        expected = self.engine.script.api_key
        if expected is None:
            return True
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        bearer = headers.get("authorization", "").removeprefix("Bearer ").strip()
        return expected in (bearer, headers.get("x-api-key", ""))

    def auth_error(self) -> dict[str, Any]:
        return {"error": {"message": "invalid API key", "type": "invalid_request_error"}}

    async def route(self, method: str, path: str, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class OpenAIDouble(ChatDouble):
    """The OpenAI Chat Completions API, as far as Winnow uses it, and the legacy
    Completions API's echoed log-probabilities (what scoring a given text uses)."""

    def __init__(self, script: Script | None = None) -> None:
        super().__init__(script)
        self.score_requests = 0  # POST /v1/completions answered

    async def route(self, method: str, path: str, receive: Receive, send: Send) -> None:
        if path == "/v1/chat/completions" and method == "POST":
            try:
                body = json.loads(await read_body(receive))
                messages = body["messages"]
                model = body["model"]
            except (ValueError, KeyError, TypeError):
                await send_json(send, 400, self._error(400, "invalid request body"))
                return
            json_mode = (body.get("response_format") or {}).get("type") == "json_object"
            max_tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or 0)
            render = self._render
            if body.get("logprobs"):
                if self.script.refuse_logprobs:
                    with self.stats._lock:
                        self.stats.faults["logprobs"] += 1
                    message = "logprobs is not supported with this model"
                    await send_json(send, 400, self._error(400, message))
                    return
                render = _with_logprobs(render, render_messages(messages))
            await self.serve_chat(
                send, messages, model, json_mode, render, self._error, body_key(body),
                max_tokens,
            )  # fmt: skip
        elif path == "/v1/completions" and method == "POST":
            await self._serve_completion(receive, send)
        elif path == "/v1/models" and method == "GET":
            self._count_models()
            data = [self._model(m) for m in self.script.models]
            await send_json(send, 200, {"object": "list", "data": data})
        elif path.startswith("/v1/models/") and method == "GET":
            self._count_models()
            model = path[len("/v1/models/") :]
            if model in self.script.models:
                await send_json(send, 200, self._model(model))
            else:
                await send_json(send, 404, self._error(404, f"The model `{model}` does not exist"))
        else:
            await send_json(send, 404, self._error(404, f"no route {method} {path}"))

    async def _serve_completion(self, receive: Receive, send: Send) -> None:
        """The legacy Completions API as scoring uses it (vLLM's and OpenAI's shape):
        ``echo`` returns the prompt's own tokens with their log-probabilities under the
        :func:`toy_logprob` model (the first token's is null), then one generated token."""
        try:
            body = json.loads(await read_body(receive))
            prompt, model = body["prompt"], body["model"]
            if not isinstance(prompt, str):
                raise TypeError("prompt")
        except (ValueError, KeyError, TypeError):
            await send_json(send, 400, self._error(400, "invalid request body"))
            return
        if model not in self.script.models:
            await send_json(send, 404, self._error(404, f"The model `{model}` does not exist"))
            return
        with self.stats._lock:
            self.score_requests += 1
        echo = bool(body.get("echo"))
        generated = "." if int(body.get("max_tokens") or 0) > 0 else ""
        text = (prompt if echo else "") + generated
        pieces = toy_tokens(prompt if echo else "") + ([generated] if generated else [])
        offsets, logprobs, at = [], [], 0
        for i, piece in enumerate(pieces):
            offsets.append(at)
            logprobs.append(None if i == 0 else toy_logprob(text[:at], piece))
            at += len(piece)
        choice: dict[str, Any] = {"index": 0, "text": text, "finish_reason": "length"}
        if body.get("logprobs") is not None:
            choice["logprobs"] = {
                "tokens": pieces,
                "token_logprobs": logprobs,
                "text_offset": offsets,
                "top_logprobs": None,
            }
        n_prompt = len(toy_tokens(prompt))
        await send_json(
            send,
            200,
            {
                "id": "cmpl-test",
                "object": "text_completion",
                "created": int(time.time()),
                "model": model,
                "choices": [choice],
                "usage": {
                    "prompt_tokens": n_prompt,
                    "completion_tokens": len(generated and [generated]),
                    "total_tokens": n_prompt + len(generated and [generated]),
                },
            },
        )

    def _count_models(self) -> None:
        with self.stats._lock:
            self.stats.model_requests += 1

    @staticmethod
    def _model(name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": 0, "owned_by": "winnow-test"}

    @staticmethod
    def _error(status: int, message: str) -> dict[str, Any]:
        kind = {429: "rate_limit_exceeded", 404: "model_not_found", 503: "overloaded"}.get(
            status, "server_error"
        )
        return {"error": {"message": message, "type": kind, "code": kind, "param": None}}

    @staticmethod
    def _render(reply: Reply, prompt_tokens: int, completion_tokens: int, model: str) -> dict:
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text},
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


# --- the toy language model behind log-probabilities --------------------------------------

_TOY_TOKEN = re.compile(r"\s*\S+|\s+")
TOY_SEEN = math.log(0.5)  # a word already in the text: likely
TOY_NEW = math.log(0.02)  # a word not seen before: unlikely


def toy_tokens(text: str) -> list[str]:
    """The double's tokenizer: each word with the whitespace before it (they join back to
    ``text`` exactly, so character offsets are exact)."""
    return _TOY_TOKEN.findall(text)


def toy_logprob(context: str, token: str) -> float:
    """A copy model, NOT a language model: a token whose word occurs in ``context`` gets
    log 0.5, any other log 0.02. So an answer that takes its words from the instruction
    is likelier after it than alone (IFD < 1), and one that does not is not (IFD = 1)."""
    word = token.strip().lower()
    seen = {w.lower() for w in context.split()}
    return TOY_SEEN if word and word in seen else TOY_NEW


def _with_logprobs(
    render: Callable[[Reply, int, int, str], dict[str, Any]], prompt: str
) -> Callable[[Reply, int, int, str], dict[str, Any]]:
    """``render`` plus the chat API's ``logprobs.content`` for the reply's tokens."""

    def rendered(reply: Reply, prompt_tokens: int, completion_tokens: int, model: str) -> dict:
        payload = render(reply, prompt_tokens, completion_tokens, model)
        content, context = [], prompt + "\n"
        for token in toy_tokens(reply.text):
            content.append({"token": token, "logprob": toy_logprob(context, token)})
            context += token
        payload["choices"][0]["logprobs"] = {"content": content}
        return payload

    return rendered


# --- running it --------------------------------------------------------------------------


class ServerThread:
    """Runs an ASGI double on uvicorn in a background thread on 127.0.0.1."""

    url_suffix = ""

    def __init__(self, app: ChatDouble, port: int = 0) -> None:
        self.app = app
        self._port = port
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self.port = 0

    @property
    def stats(self) -> Stats:
        return self.app.stats

    @property
    def script(self) -> Script:
        return self.app.script

    def set_script(self, script: Script) -> None:
        self.app.engine.set_script(script)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.url_suffix}"

    def start(self) -> ServerThread:
        import uvicorn

        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only
        # when it sees that proto; without it every reply waits ~40 ms (Nagle + delayed ACK).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        sock.listen(2048)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="critical",  # truncated bodies and hangs are on purpose
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
            backlog=2048,
            timeout_keep_alive=30,
        )
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        started = threading.Event()

        async def main() -> None:
            task = asyncio.create_task(self._server.serve(sockets=[sock]))
            while not self._server.started and not task.done():
                await asyncio.sleep(0.01)
            started.set()
            await task

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("test LLM server did not start")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LLMTestServer(ServerThread):
    """The OpenAI-compatible double in a thread. ``base_url`` ends in ``/v1``."""

    url_suffix = "/v1"

    def __init__(self, script: Script | None = None, port: int = 0) -> None:
        super().__init__(OpenAIDouble(script), port)


def serve_until_signalled(server: ServerThread) -> None:
    """Start ``server``, print its base URL on stdout, serve until SIGTERM or SIGINT."""
    server.start()
    print(server.base_url, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    server.stop()
