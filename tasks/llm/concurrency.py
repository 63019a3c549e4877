"""Concurrency for LLM requests: one background event loop per process, and the retry
back-off policy. (Each endpoint's limiter is :mod:`tasks.llm.limiter`.)

Why one loop: Prefect runs tasks in threads, and each thread calls the sync
``LLMClient`` API. If every call ran its own ``asyncio.run``, each would get its own
limiter and connection pool, and a 429 seen by one thread would not slow the others.
With one loop thread per process, every caller shares one limiter per
(provider, base_url, model) and the providers' HTTP connection pools.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from tasks.llm.limiter import forget_limiters

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
            forget_limiters()
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


# --- retries -----------------------------------------------------------------------------


class RetryPolicy(BaseModel):
    """Exponential back-off with full jitter for transient failures.

    Rate limits get their own, larger budget (``rate_limit_factor`` x ``max_retries``)
    because a 429 says "later", not "broken", and the limiter already paces and slows
    down; a refusal without ``Retry-After`` waits ``default_rate_limit_wait_s`` plus the
    back-off.
    """

    base_s: float = Field(0.25, gt=0)
    cap_s: float = Field(30.0, gt=0)
    rate_limit_factor: int = Field(4, ge=1)
    # Wait used after a 429 without Retry-After.
    default_rate_limit_wait_s: float = Field(1.0, ge=0)

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        upper = min(self.cap_s, self.base_s * 2 ** (attempt - 1))
        return (rng or random).uniform(0, upper)
