"""Concurrency for LLM requests: one background event loop per process, an adaptive
(AIMD) concurrency limiter per endpoint, and the retry back-off policy.

Why one loop: Prefect runs tasks in threads, and each thread calls the sync
``LLMClient`` API. If every call ran its own ``asyncio.run``, each would get its own
limiter and connection pool, and a 429 seen by one thread would not slow the others.
With one loop thread per process, every caller shares one limiter per
(provider, base_url, model) and the providers' HTTP connection pools.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from concurrent.futures import Future
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")

# --- the shared loop ---------------------------------------------------------------------

_loop_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_loop_pid: int | None = None


def background_loop() -> asyncio.AbstractEventLoop:
    """The process's LLM event loop, started on first use (and again after a fork)."""
    global _loop, _loop_pid
    with _loop_lock:
        if _loop is None or _loop_pid != os.getpid() or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="winnow-llm-loop", daemon=True)
            thread.start()
            _loop, _loop_pid = loop, os.getpid()
            _limiters.clear()
        return _loop


def submit(coro: Coroutine[Any, Any, T]) -> Future[T]:
    """Schedule a coroutine on the background loop from any other thread."""
    loop = background_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coro.close()
        raise RuntimeError("sync LLMClient methods cannot be called from the LLM loop itself")
    return asyncio.run_coroutine_threadsafe(coro, loop)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the background loop and wait for its result."""
    return submit(coro).result()


# --- the adaptive limiter ----------------------------------------------------------------

PACING_BURST = 4  # sends that may go back to back after a late pacing timer


class AdaptiveLimiter:
    """AIMD concurrency limit, like TCP congestion control.

    - Starts at ``ceiling`` (the spec's ``max_concurrency``).
    - On a 429: the limit halves (at most once per "window": only if the rate-limited
      request was sent after the last decrease, so a burst of 429s from one overload
      counts once), and no new request is sent until ``Retry-After`` has passed.
    - On a success: the limit grows back towards the limit it had before the last
      decrease (half the gap per window of requests, so a 429 costs a few
      round trips rather than ``limit/2`` of them), then by ``1/limit`` per success
      (about +1 per window) to probe above it, up to the ceiling.
    - Sends are paced: consecutive sends are at least ``latency / limit / headroom``
      apart (latency = moving average of answered requests). That is never slower than
      the concurrency limit allows (``headroom`` > 1), but it spreads sends out. Without
      it, requests sent together come back together, and the one loop thread has to
      parse a whole wave of responses at once while the rest of the wave waits; with a
      steady server latency the waves never dissolve and cost ~25% of the throughput.

    Lives on the background loop; not thread-safe by design (the loop is one thread).
    """

    def __init__(
        self,
        ceiling: int,
        *,
        floor: int = 1,
        max_pause_s: float = 300.0,
        pacing_headroom: float = 1.25,
    ) -> None:
        self.ceiling = ceiling
        self.floor = floor
        self.limit = float(ceiling)
        self.in_flight = 0
        self.paused_until = 0.0
        self.max_pause_s = max_pause_s
        self.last_decrease = -math.inf
        self.limit_before_decrease = float(ceiling)
        self.decreases = 0
        self.rate_limited = 0
        self.min_limit_seen = float(ceiling)
        self.pacing_headroom = pacing_headroom
        self.latency_ewma: float | None = None
        self.next_send_at = 0.0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def current(self) -> int:
        return max(self.floor, int(self.limit))

    async def acquire(self) -> float:
        """Wait for a slot (FIFO); returns the send time (for :meth:`on_rate_limit`)."""
        now = time.monotonic()
        if not self._waiters and self.in_flight < self.current and now >= self._ready_at():
            self._grant(now)
            return now
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        self._wake()  # grants it at once if a slot is free, or arms the end-of-pause timer
        try:
            await waiter  # granted: in_flight already counts this request
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.in_flight -= 1  # granted and cancelled at once: give the slot back
                self._wake()
            else:
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    pass
            raise
        return time.monotonic()

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _ready_at(self) -> float:
        return max(self.paused_until, self.next_send_at)

    def _grant(self, now: float) -> None:
        self.in_flight += 1
        if self.latency_ewma is not None:
            gap = self.latency_ewma / self.current / self.pacing_headroom
            # A token bucket of a few sends: a timer that fires late (a busy loop or
            # machine) lets the sends it held back catch up instead of losing the time.
            self.next_send_at = max(now - PACING_BURST * gap, self.next_send_at) + gap

    def _wake(self) -> None:
        """Grant free slots to the first waiters; while paused or pacing, arm a timer."""
        now = time.monotonic()
        while self._waiters and self.in_flight < self.current:
            ready = self._ready_at()
            if now < ready:
                if self._timer is None:
                    loop = asyncio.get_running_loop()
                    self._timer = loop.call_later(ready - now, self._end_pause)
                return
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._grant(now)
                waiter.set_result(None)

    def _end_pause(self) -> None:
        self._timer = None
        self._wake()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        sent_at = await self.acquire()
        try:
            yield sent_at
        finally:
            self.release()

    def on_success(self, latency_s: float | None = None) -> None:
        if latency_s is not None:
            ewma = self.latency_ewma
            self.latency_ewma = latency_s if ewma is None else 0.9 * ewma + 0.1 * latency_s
        if self.limit < self.ceiling:
            before = self.current
            gap = self.limit_before_decrease - self.limit
            step = max(1.0, gap / 2) / self.limit
            self.limit = min(float(self.ceiling), self.limit + step)
            if self.current > before:
                self._wake()

    def on_rate_limit(self, sent_at: float, retry_after: float | None) -> None:
        self.rate_limited += 1
        now = time.monotonic()
        if sent_at >= self.last_decrease:
            self.limit_before_decrease = self.limit
            self.limit = max(float(self.floor), self.limit / 2)
            self.min_limit_seen = min(self.min_limit_seen, self.limit)
            self.last_decrease = now
            self.decreases += 1
        if retry_after:
            pause = min(max(retry_after, 0.0), self.max_pause_s)
            if now + pause > self.paused_until:
                self.paused_until = now + pause
                if self._timer is not None:  # re-armed for the new end by _wake
                    self._timer.cancel()
                    self._timer = None
                self._wake()

    def set_ceiling(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self.limit = min(self.limit, float(ceiling))
        self._wake()


_limiters: dict[tuple[str, str, str], AdaptiveLimiter] = {}


def shared_limiter(provider: str, base_url: str, model: str, ceiling: int) -> AdaptiveLimiter:
    """The one limiter of an endpoint in this process. Call on the background loop.

    The ceiling is the most recent client's ``max_concurrency``.
    """
    key = (provider, base_url, model)
    limiter = _limiters.get(key)
    if limiter is None:
        limiter = _limiters[key] = AdaptiveLimiter(ceiling)
    elif limiter.ceiling != ceiling:
        limiter.set_ceiling(ceiling)
    return limiter


# --- retries -----------------------------------------------------------------------------


class RetryPolicy(BaseModel):
    """Exponential back-off with full jitter for transient failures.

    Rate limits get their own, larger budget (``rate_limit_factor`` x ``max_retries``)
    because a 429 says "later", not "broken", and the limiter already slows down.
    """

    base_s: float = Field(0.5, gt=0)
    cap_s: float = Field(30.0, gt=0)
    rate_limit_factor: int = Field(4, ge=1)
    # Wait used after a 429 without Retry-After.
    default_rate_limit_wait_s: float = Field(1.0, ge=0)

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        upper = min(self.cap_s, self.base_s * 2 ** (attempt - 1))
        return (rng or random).uniform(0, upper)
