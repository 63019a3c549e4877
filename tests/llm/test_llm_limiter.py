"""The adaptive (AIMD) limiter: halves on 429, honours Retry-After, recovers."""

from __future__ import annotations

import asyncio
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.llm.base import ChatRequest, Message
from tasks.llm.concurrency import AdaptiveLimiter, RetryPolicy
from winnow.testing.llm_server import Script


def run(coro):
    return asyncio.run(coro)


def test_halves_once_per_window_and_recovers_additively():
    async def scenario() -> None:
        limiter = AdaptiveLimiter(32)
        sent = [await limiter.acquire() for _ in range(8)]
        # A burst of 429s from requests sent before the first decrease counts once.
        for t in sent:
            limiter.on_rate_limit(t, None)
        assert limiter.current == 16 and limiter.decreases == 1
        later = await limiter.acquire()
        limiter.on_rate_limit(later, None)
        assert limiter.current == 8 and limiter.decreases == 2
        for _ in range(9):
            limiter.release()
        successes = 0
        while limiter.current < 14:  # back near the limit before the last decrease (16)
            limiter.on_success()
            successes += 1
        assert successes <= 40  # a few windows of 8-14 requests, not one per +1
        while limiter.current < 20:  # then additive probing: about +1 per window
            limiter.on_success()
            successes += 1
        assert successes >= 40 + sum(range(14, 19))
        while limiter.current < 32:
            limiter.on_success()
        limiter.on_success()
        assert limiter.current == 32

    run(scenario())


def test_never_below_the_floor():
    async def scenario() -> None:
        limiter = AdaptiveLimiter(4)
        for _ in range(10):
            limiter.on_rate_limit(time.monotonic() + 1, None)
        assert limiter.current == 1

    run(scenario())


def test_retry_after_pauses_new_sends():
    async def scenario() -> None:
        limiter = AdaptiveLimiter(8)
        t = await limiter.acquire()
        limiter.on_rate_limit(t, 0.3)
        limiter.release()
        started = time.monotonic()
        await limiter.acquire()
        assert time.monotonic() - started >= 0.28

    run(scenario())


@settings(max_examples=30, deadline=None)
@given(
    ceiling=st.integers(1, 16),
    events=st.lists(st.sampled_from(["ok", "429"]), min_size=1, max_size=60),
)
def test_in_flight_never_exceeds_the_limit(ceiling, events):
    async def scenario() -> None:
        limiter = AdaptiveLimiter(ceiling)
        peak = 0
        outcomes = iter(events * 3)

        async def task() -> None:
            nonlocal peak
            async with limiter.slot() as sent_at:
                peak = max(peak, limiter.in_flight)
                assert limiter.in_flight <= max(limiter.current, 1) or limiter.decreases
                await asyncio.sleep(0)
                if next(outcomes, "ok") == "429":
                    limiter.on_rate_limit(sent_at, None)
                else:
                    limiter.on_success()

        await asyncio.gather(*(task() for _ in range(len(events))))
        assert peak <= ceiling
        assert limiter.in_flight == 0 and not limiter._waiters
        assert 1 <= limiter.current <= ceiling

    run(scenario())


def test_backoff_is_bounded_jittered_and_exponential():
    policy = RetryPolicy(base_s=0.5, cap_s=4.0)
    draws = [policy.backoff(1) for _ in range(200)]
    assert all(0 <= d <= 0.5 for d in draws) and len(set(draws)) > 100
    assert max(policy.backoff(10) for _ in range(200)) <= 4.0


def test_client_backs_off_on_429_and_survives(llm_server, llm_client):
    """A server that answers 429 above 4 concurrent requests: the client's limit drops,
    every request still succeeds, then the limit recovers."""
    llm_server.set_script(
        Script(latency_ms=40, concurrency=4, over_capacity="429", retry_after_s=0.05)
    )
    client = llm_client(max_concurrency=32, max_retries=10)
    requests = [
        ChatRequest(messages=[Message(role="user", content=f"burst {i}")]) for i in range(120)
    ]
    results = client.complete_many(requests)
    assert all(r.ok for r in results)
    limiter = client.limiter
    assert llm_server.stats.faults["429"] >= 1
    assert limiter.decreases >= 1 and limiter.min_limit_seen <= 8
    assert llm_server.stats.max_in_flight <= 4
    assert llm_server.stats.completed == 120

    # Recovery: with capacity back, successes raise the limit again.
    llm_server.set_script(Script(latency_ms=5))
    before = limiter.limit
    more = [ChatRequest(messages=[Message(role="user", content=f"calm {i}")]) for i in range(300)]
    assert all(r.ok for r in client.complete_many(more))
    assert limiter.limit > before


def test_rate_limit_retries_are_bounded_too(llm_server, llm_client):
    llm_server.set_script(Script(fault_sequence=["429"] * 50, retry_after_s=0))
    result = llm_client(max_retries=1).complete_many(
        [ChatRequest(messages=[Message(role="user", content="x")])]
    )[0]
    assert not result.ok and "rate limited" in (result.error or "")
    assert result.attempts == 1 + 1 * RetryPolicy().rate_limit_factor
