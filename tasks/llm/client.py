"""``LLMClient``: the one way Winnow code talks to an LLM.

Above every provider adapter it adds, once:

- the **journal**: a request already answered (same ``request_key``) is answered from
  the journal without any request; every new answer is committed to it before it is
  handed back, so a crashed or re-run job never pays twice;
- **concurrency and rate limits**: requests run on the process's shared event loop,
  under the shared limiter of their endpoint (:mod:`tasks.llm.limiter`): paced ahead of
  the quota the answers' headers report, all held while a quota is spent, the
  concurrency backed off on capacity signals only, and any other refused request
  retried after its own ``Retry-After`` while the others go on;
- **retries**: exponential back-off with jitter on transient failures (5xx, timeouts,
  dropped connections, malformed or truncated bodies), bounded by ``spec.max_retries``;
  after that the request's ``ChatResult`` carries the error — nothing is dropped and
  nothing raises per request;
- **outages**: a server refusing connections (stopped, restarting) is waited for up to
  ``spec.max_outage_s``, then ``EndpointDown`` stops the caller with one clear message;
- **cost**: tokens, latency and USD per request from the price table.

The API is synchronous (flows call it from Prefect task threads); order is preserved.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel

from tasks.core import progress
from tasks.llm.base import (
    ChatRequest,
    ChatResult,
    Completion,
    ConfigError,
    EndpointDown,
    Logprobs,
    Overloaded,
    PermanentError,
    Provider,
    ProviderSpec,
    RateLimited,
    TransientError,
    Unreachable,
    request_key,
)
from tasks.llm.concurrency import RetryPolicy, run_sync, submit
from tasks.llm.journal import GroupCommitter, Journal, JournalEntry
from tasks.llm.limiter import EndpointLimiter, Refusal, shared_limiter
from tasks.llm.outage import POLL_S, outage_for
from tasks.llm.prices import PriceTable
from tasks.llm.registry import make_provider, validate_kind
from tasks.llm.structured import JsonResult, answer_json

R = TypeVar("R")

# Requests in flight and recently finished in this process, by (journal, key) (touched
# only on the loop thread). They close the window between a caller's journal lookup and
# its send, when another thread is answering or has just answered the same request.
_inflight: dict[tuple[str, str], asyncio.Future[ChatResult]] = {}
_recent: OrderedDict[tuple[str, str], ChatResult] = OrderedDict()
_RECENT_MAX = 10_000


class LLMClient:
    """Journaled, rate-adaptive, retrying access to one provider and model.

    ``journal=None`` uses the project's journal (``tasks.core.paths.journal_path()``); pass
    ``use_journal=False`` to run without one. ``retry`` tunes the back-off.
    """

    def __init__(
        self,
        spec: ProviderSpec,
        *,
        journal: Journal | None = None,
        prices: PriceTable | None = None,
        provider: Provider | None = None,
        retry: RetryPolicy | None = None,
        use_journal: bool = True,
    ) -> None:
        validate_kind(spec.kind)
        self.spec = spec
        self.provider: Provider = provider or make_provider(spec)
        self._own_journal = journal is None and use_journal
        self.journal: Journal | None = (
            journal if journal is not None else (Journal() if use_journal else None)
        )
        self.prices = prices or PriceTable.load()
        self.retry = retry or RetryPolicy()
        self._committer = GroupCommitter(self.journal) if self.journal is not None else None
        self._checked = False
        self._check_lock = threading.Lock()
        self._limiter: EndpointLimiter | None = None
        # Answers are shared in-process only between clients of the same journal.
        self._scope = str(self.journal.path) if self.journal is not None else f"none:{id(self)}"

    # --- identity ---

    @property
    def name(self) -> str:
        return self.provider.name

    @property
    def model(self) -> str:
        return self.provider.model

    def key(self, request: ChatRequest) -> str:
        """The journal key of ``request`` for this provider and model (after check)."""
        self.check()
        return request_key(self.name, self.model, request)

    @property
    def limiter(self) -> EndpointLimiter:
        """The endpoint's shared limiter (created on first request)."""
        if self._limiter is None:
            self._limiter = shared_limiter(
                self.name, self.spec.base_url or "", self.model, self.spec.max_concurrency
            )
        return self._limiter

    # --- public sync API ---

    def check(self) -> None:
        """Raise ConfigError now if no request could succeed (missing key, unknown model,
        bad or unreachable URL, missing GGUF). Runs once; later calls are free."""
        with self._check_lock:
            if not self._checked:
                run_sync(self.provider.check())
                self._checked = True

    def complete_many(
        self,
        requests: Sequence[ChatRequest],
        *,
        on_result: Callable[[int, ChatResult], None] | None = None,
    ) -> list[ChatResult]:
        """Answer every request, in order. Journal hits come back ``cached=True`` with no
        request made; identical requests are sent once. ``on_result(index, result)`` is
        called in this thread as each result is ready (journal hits first)."""
        self.check()
        keys = [request_key(self.name, self.model, r) for r in requests]
        cached = self.journal.get_many(keys) if self.journal is not None else {}
        results: list[ChatResult | None] = [None] * len(requests)
        todo: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            if key in cached:
                results[i] = self._from_entry(cached[key])
                if on_result:
                    on_result(i, results[i])  # type: ignore[arg-type]
            else:
                todo.setdefault(key, []).append(i)
        jobs = {key: _bind(self._answer, key, requests[idx[0]]) for key, idx in todo.items()}
        self._drain(jobs, todo, results, on_result)
        return results  # type: ignore[return-value]

    def complete_json(
        self,
        requests: Sequence[ChatRequest],
        schema: type[BaseModel],
        *,
        max_reasks: int = 2,
        on_result: Callable[[int, JsonResult], None] | None = None,
    ) -> list[JsonResult]:
        """Structured output: JSON mode on, each answer validated against ``schema``; an
        invalid one is re-asked with the validation error (each re-ask is its own
        journaled request) up to ``max_reasks`` times. See :mod:`tasks.llm.structured`."""
        self.check()
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(request_key(self.name, self.model, r), []).append(i)
        jobs = {
            key: _bind(answer_json, self._answer_request, requests[idx[0]], schema, max_reasks)
            for key, idx in groups.items()
        }
        results: list[JsonResult | None] = [None] * len(requests)
        self._drain(jobs, groups, results, on_result)
        return results  # type: ignore[return-value]

    def record(
        self,
        request: ChatRequest,
        completion: Completion,
        *,
        batch: bool = False,
        latency_s: float = 0.0,
    ) -> ChatResult:
        """Journal an answer obtained outside this client, e.g. from a batch API job, and
        return its result. ``batch=True`` prices it at the batch discount and marks the
        entry. An answer already journaled for the request wins (and is returned)."""
        if not self.model:
            raise ConfigError("the model is not resolved yet: call check() first")
        key = request_key(self.name, self.model, request)
        cost = self.prices.cost(self.name, self.model, completion.usage, batch=batch)
        entry = self._entry(key, request, completion, latency_s, cost, attempts=1, batch=batch)
        progress.spent(cost)
        if self.journal is not None:
            self.journal.put(entry)
            entry = self.journal.get(key) or entry
        return self._from_entry(entry).model_copy(update={"cached": False})

    def close(self) -> None:
        try:
            run_sync(self.provider.aclose())
        finally:
            if self._committer is not None:
                self._committer.close()
            if self._own_journal and self.journal is not None:
                self.journal.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing between the caller's thread and the loop ---

    def _drain(
        self,
        jobs: dict[str, Callable[[], Awaitable[R]]],
        groups: dict[str, list[int]],
        results: list[Any],
        on_result: Callable[[int, Any], None] | None,
    ) -> None:
        """Run ``jobs`` on the loop; fan each result out to its indices in this thread."""
        if not jobs:
            return
        done: queue.Queue[tuple[str, Any]] = queue.Queue()

        async def run_all() -> None:
            async def one(key: str, job: Callable[[], Awaitable[R]]) -> None:
                done.put((key, await job()))

            await asyncio.gather(*(one(k, j) for k, j in jobs.items()))

        future = submit(run_all())
        try:
            for _ in range(len(jobs)):
                while True:
                    try:
                        key, result = done.get(timeout=0.5)
                        break
                    except queue.Empty:
                        if future.done():
                            future.result()  # a bug in the loop code: raise it here
                for i in groups[key]:
                    results[i] = result
                    if on_result:
                        on_result(i, result)
            future.result()
        except BaseException:
            future.cancel()
            raise

    # --- one request, on the loop ---

    async def _answer_request(self, request: ChatRequest) -> ChatResult:
        """Answer one request not looked up yet (re-asks of structured output)."""
        key = request_key(self.name, self.model, request)
        slot = (self._scope, key)
        if self.journal is not None and slot not in _inflight and slot not in _recent:
            entry = await asyncio.to_thread(self.journal.get, key)
            if entry is not None:
                return self._from_entry(entry)
        return await self._answer(key, request)

    async def _answer(self, key: str, request: ChatRequest) -> ChatResult:
        """Answer one request whose journal lookup missed: join an identical request in
        flight, reuse one just finished, or send it."""
        slot = (self._scope, key)
        if slot in _recent:
            return _recent[slot].model_copy(update={"cached": True, "attempts": 0})
        running = _inflight.get(slot)
        if running is not None:
            result = await asyncio.shield(running)
            return result.model_copy(update={"cached": True, "attempts": 0})
        future: asyncio.Future[ChatResult] = asyncio.get_running_loop().create_future()
        _inflight[slot] = future
        try:
            result = await self._send(key, request)
            progress.spent(result.cost_usd)  # "cost so far" for the person waiting
            future.set_result(result)
            if result.ok and self.journal is not None:
                _recent[slot] = result
                while len(_recent) > _RECENT_MAX:
                    _recent.popitem(last=False)
            return result
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: nobody else may be waiting
            raise
        finally:
            del _inflight[slot]

    async def _send(self, key: str, request: ChatRequest) -> ChatResult:
        """Send with retries; journal the answer before returning it. Never raises
        (except cancellation, and EndpointDown when the server stays unreachable):
        failures come back as ``ChatResult.error``."""
        limiter = self.limiter
        where = self.spec.base_url or self.name
        outage = outage_for(self.name, where)
        spec, policy = self.spec, self.retry
        started = time.monotonic()
        prompt_tokens, max_tokens = prompt_estimate(request), request.params.max_tokens
        attempts = transient = limited = 0
        error = ""
        while True:
            attempts += 1
            wait = 0.0
            async with limiter.slot(prompt_tokens, max_tokens, attempts > 1) as ticket:
                t0 = time.monotonic()
                try:
                    completion = await self.provider.complete(request)
                except RateLimited as exc:
                    spent = exc.limits is not None and exc.limits.spent
                    kind = Refusal.QUOTA if spent else Refusal.RATE
                    limiter.on_refused(ticket, kind, exc.retry_after, exc.limits)
                    limited += 1
                    error = f"rate limited: {exc}"
                    if limited > spec.max_retries * policy.rate_limit_factor:
                        return self._failure(key, error, attempts, started)
                    if exc.retry_after is not None:
                        wait = exc.retry_after  # this request's wait; the others go on
                    else:
                        wait = policy.backoff(limited) + policy.default_rate_limit_wait_s
                except Unreachable as exc:
                    down_for = outage.down()
                    if down_for >= spec.max_outage_s:
                        raise EndpointDown(
                            f"cannot reach the LLM server at {where} for "
                            f"{down_for:.0f} s ({exc}); stopped waiting. Every answer so far "
                            "is journaled: run the same command again to resume."
                        ) from exc
                    wait = min(POLL_S, spec.max_outage_s - down_for)
                except TransientError as exc:
                    if isinstance(exc, Overloaded):
                        limiter.on_refused(ticket, Refusal.OVERLOAD, exc.retry_after)
                    transient += 1
                    error = str(exc)
                    if transient > spec.max_retries:
                        return self._failure(key, error, attempts, started)
                    wait = policy.backoff(transient)
                    if isinstance(exc, Overloaded) and exc.retry_after:
                        wait = max(wait, exc.retry_after)
                except PermanentError as exc:
                    return self._failure(key, str(exc), attempts, started)
                except ConfigError as exc:
                    return self._failure(key, f"configuration: {exc}", attempts, started)
                except Exception as exc:  # an adapter bug must not lose the row
                    return self._failure(
                        key, f"unexpected {type(exc).__name__}: {exc}", attempts, started
                    )
                else:
                    latency = time.monotonic() - t0
                    used = completion.usage.prompt_tokens
                    limiter.on_success(ticket, latency, completion.limits, used)
                    outage.up()
                    break
            if wait:
                await asyncio.sleep(wait)

        cost = self.prices.cost(self.name, self.model, completion.usage)
        result = ChatResult(
            key=key,
            text=completion.text,
            usage=completion.usage,
            latency_s=latency,
            cost_usd=cost,
            provider=self.name,
            model=self.model,
            finish_reason=completion.finish_reason,
            attempts=attempts,
            logprobs=completion.logprobs,
        )
        if self._committer is not None:
            entry = self._entry(key, request, completion, latency, cost, attempts)
            try:
                await self._committer.put(entry)
            except Exception as exc:  # keep the paid text, but say it is not durable
                return result.model_copy(update={"error": f"journal write failed: {exc}"})
        return result

    def _entry(
        self,
        key: str,
        request: ChatRequest,
        completion: Completion,
        latency_s: float,
        cost_usd: float,
        attempts: int,
        batch: bool = False,
    ) -> JournalEntry:
        return JournalEntry(
            key=key,
            provider=self.name,
            model=self.model,
            template=request.template,
            template_version=request.template_version,
            text=completion.text,
            finish_reason=completion.finish_reason,
            prompt_tokens=completion.usage.prompt_tokens,
            completion_tokens=completion.usage.completion_tokens,
            latency_s=latency_s,
            cost_usd=cost_usd,
            batch=batch,
            attempts=attempts,
            request={
                "messages": [m.model_dump() for m in request.messages],
                "params": request.params.model_dump(),
                "sample": request.sample,
            },
            mean_logprob=completion.logprobs.mean_logprob if completion.logprobs else None,
            logprob_tokens=completion.logprobs.tokens if completion.logprobs else None,
        )

    def _failure(self, key: str, error: str, attempts: int, started: float) -> ChatResult:
        return ChatResult(
            key=key,
            error=error,
            latency_s=time.monotonic() - started,
            provider=self.name,
            model=self.model,
            attempts=attempts,
        )

    @staticmethod
    def _from_entry(entry: JournalEntry) -> ChatResult:
        """A journal hit. ``cost_usd`` is what the answer cost when it was paid for."""
        return ChatResult(
            key=entry.key,
            text=entry.text,
            usage={
                "prompt_tokens": entry.prompt_tokens,
                "completion_tokens": entry.completion_tokens,
            },
            latency_s=entry.latency_s,
            cost_usd=entry.cost_usd,
            cached=True,
            provider=entry.provider,
            model=entry.model,
            finish_reason=entry.finish_reason,
            logprobs=(
                Logprobs(mean_logprob=entry.mean_logprob, tokens=entry.logprob_tokens)
                if entry.mean_logprob is not None and entry.logprob_tokens
                else None
            ),
        )


def prompt_estimate(request: ChatRequest) -> float:
    """A request's prompt tokens before it is sent: about four characters a token (the
    endpoint's limiter calibrates it from the answers' usage)."""
    return sum(len(m.content) for m in request.messages) / 4 + 4 * len(request.messages)


def _bind(fn: Callable[..., Awaitable[R]], *args: Any) -> Callable[[], Awaitable[R]]:
    return lambda: fn(*args)


def make_client(
    kind: str = "local", model: str = "", base_url: str | None = None, **spec_fields: Any
) -> LLMClient:
    """A client from plain settings (CLI flags, recipe config). Client options
    (``journal``, ``prices``, ``retry``, ``use_journal``) pass through; the rest go to
    :class:`ProviderSpec`."""
    validate_kind(kind)
    client_fields = {
        k: spec_fields.pop(k)
        for k in ("journal", "prices", "retry", "use_journal", "provider")
        if k in spec_fields
    }
    try:
        spec = ProviderSpec(kind=kind, model=model, base_url=base_url, **spec_fields)  # type: ignore[arg-type]
    except Exception as exc:
        raise ConfigError(f"bad LLM settings: {exc}") from exc
    return LLMClient(spec, **client_fields)
