"""Rate limits handled as the best clients do: each kind of refusal gets its own answer.

Unit tests drive the endpoint limiter by hand; the rest send real requests through the
real SDKs to the test LLM servers (test doubles with hosted APIs' quotas and headers)
and count exactly what the server received."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.llm.base import ChatRequest, Message
from tasks.llm.concurrency import RetryPolicy
from tasks.llm.limiter import CapacityProbe, EndpointLimiter, Refusal
from tasks.llm.ratelimits import Budget, RateLimits, duration_s, read_limits, retry_after
from winnow.testing.llm_server import Quota, Script


def run(coro):
    return asyncio.run(coro)


def requests(n: int, tag: str = "r", max_tokens: int = 16) -> list[ChatRequest]:
    return [
        ChatRequest(
            messages=[Message(role="user", content=f"{tag} {i}")],
            params={"max_tokens": max_tokens},
        )
        for i in range(n)
    ]


# --- what the headers say ---------------------------------------------------------------


def test_openai_and_anthropic_headers_are_read() -> None:
    assert duration_s("6m0s") == 360 and duration_s("1.5s") == 1.5 and duration_s("20ms") == 0.02
    assert duration_s("2") == 2 and duration_s("soon") is None
    openai = read_limits(
        {
            "x-ratelimit-limit-requests": "12000",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "250ms",
            "x-ratelimit-limit-tokens": "2000000",
            "x-ratelimit-remaining-tokens": "1999000",
            "x-ratelimit-reset-tokens": "30ms",
        }
    )
    assert openai is not None and openai.spent and openai.refill_s() == 0.25
    assert openai.requests.per_second == 200 and openai.tokens.remaining == 1_999_000
    now = time.time()
    reset = (datetime.fromtimestamp(now, UTC) + timedelta(seconds=2)).isoformat()
    anthropic = read_limits(
        {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "49",
            "anthropic-ratelimit-requests-reset": reset,
        },
        now=now,
    )
    assert anthropic is not None and not anthropic.spent
    assert abs(anthropic.requests.reset_s - 2) < 0.01 and anthropic.tokens is None
    assert read_limits({"content-type": "application/json"}) is None
    assert retry_after({"retry-after": "3", "retry-after-ms": "250"}) == 0.25
    assert retry_after({"retry-after": "3"}) == 3 and retry_after({}) is None


# --- the limiter, driven by hand ----------------------------------------------------------


def test_a_random_refusal_delays_only_its_request() -> None:
    async def scenario() -> None:
        limiter = EndpointLimiter(8)
        ticket = await limiter.acquire()
        limiter.on_refused(ticket, Refusal.RATE, retry_after=5.0)
        limiter.release()
        started = time.monotonic()
        await limiter.acquire()  # nobody else waits for that request's Retry-After
        assert time.monotonic() - started < 0.05
        assert limiter.current == 8 and limiter.quota_pauses == 0

    run(scenario())


def test_a_spent_quota_holds_every_send_until_its_reset() -> None:
    async def scenario() -> None:
        limiter = EndpointLimiter(8)
        ticket = await limiter.acquire()
        spent = RateLimits(requests=Budget(limit=600, remaining=0, reset_s=0.3))
        limiter.on_refused(ticket, Refusal.QUOTA, retry_after=0.3, limits=spent)
        limiter.release()
        started = time.monotonic()
        await limiter.acquire()
        assert time.monotonic() - started >= 0.28
        assert limiter.quota_pauses == 1 and limiter.current == 8  # no capacity signal

    run(scenario())


def test_overloads_back_off_once_per_window() -> None:
    async def scenario() -> None:
        limiter = EndpointLimiter(32)
        tickets = [await limiter.acquire() for _ in range(8)]
        for ticket in tickets:  # one overload, seen by eight requests sent before it
            limiter.on_refused(ticket, Refusal.OVERLOAD)
        assert limiter.current == 22 and limiter.decreases == 1
        later = await limiter.acquire()
        limiter.on_refused(later, Refusal.OVERLOAD)
        assert limiter.current == 15 and limiter.decreases == 2
        for _ in range(9):
            limiter.release()
        for _ in range(100):
            limiter.on_refused(await limiter.acquire(), Refusal.OVERLOAD)
            limiter.release()
        assert limiter.current == 1  # never below the floor

    run(scenario())


def drive(probe: CapacityProbe, limit: float, share_at) -> list[tuple[float, str]]:
    """Run windows of answers whose 429 share is ``share_at(limit)``, from ``limit`` as
    the ceiling; the steps taken."""
    steps, ceiling = [], limit
    probe.started = 0.0
    for _ in range(12):
        n = max(16, int(limit))
        refused = round(n * share_at(limit))
        for i in range(n):  # sends a second old: mature at a latency of 1 ms
            probe.record(time.monotonic() - 1 + i / 1000, i < refused, 0.001)
        limit, what = probe.judge(limit, 1.0, ceiling, None)
        probe.started = 0.0  # the next window counts every send
        steps.append((limit, what))
    return steps


def test_429s_that_track_the_concurrency_lower_it_to_the_capacity() -> None:
    steps = drive(CapacityProbe(), 256.0, lambda c: max(0.0, 1 - 64 / c))
    assert steps[0][1] == "trial" and steps[1][1] == "capacity"
    final = [limit for limit, _ in steps[2:]]
    assert all(60 <= limit <= 80 for limit in final), steps  # near 64, refusing few


def test_a_cut_under_a_flood_is_no_floor_for_the_trials_after_it() -> None:
    """A flood of refusals cut the limit to 128 (only a bound from above): 429s that still
    track the concurrency take it on down to the capacity, 64, and are not mistaken for
    random ones (a trial floored near 128 would barely lower them: CI once saw that
    learnt as a 36% background share, after which nothing lowered the limit)."""
    probe = CapacityProbe()
    probe.cut(128.0, None)
    steps = drive(probe, 128.0, lambda c: max(0.0, 1 - 64 / c))
    assert steps[0][1] == "trial" and steps[1][1] == "capacity", steps
    assert probe.background == 0.0
    assert all(60 <= limit <= 80 for limit, _ in steps[2:]), steps


def test_random_429s_leave_the_concurrency_alone() -> None:
    probe = CapacityProbe()
    steps = drive(probe, 64.0, lambda c: 0.2)
    assert steps[0][1] == "trial" and steps[1] == (64.0, "random")
    assert all(limit == 64.0 for limit, _ in steps[1:])  # learnt: one trial, never again
    assert abs(probe.background - 0.2) < 0.02


def test_pacing_ahead_of_a_quota_from_the_headers() -> None:
    """After an answer reports 1 request left of 600 a minute (10 a second), the second
    send goes at once and the third waits for the bucket to refill (~0.1 s)."""

    async def scenario() -> None:
        limiter = EndpointLimiter(8)
        first = await limiter.acquire()
        limits = RateLimits(requests=Budget(limit=600, remaining=1, reset_s=5.9))
        limiter.on_success(first, 0.01, limits)
        limiter.release()
        started = time.monotonic()
        await limiter.acquire()
        assert time.monotonic() - started < 0.05
        await limiter.acquire()
        assert time.monotonic() - started >= 0.08

    run(scenario())


def test_token_quota_charges_prompt_and_max_tokens() -> None:
    async def scenario() -> None:
        limiter = EndpointLimiter(8)
        first = await limiter.acquire(100)
        limits = RateLimits(tokens=Budget(limit=60_000, remaining=150, reset_s=0.1))
        limiter.on_success(first, 0.01, limits)
        started = time.monotonic()
        await limiter.acquire(100)  # 150 left: fits
        assert time.monotonic() - started < 0.05
        await limiter.acquire(100)  # 50 left, 1,000 a second: waits ~0.05 s
        assert time.monotonic() - started >= 0.04

    run(scenario())


@settings(max_examples=30, deadline=None)
@given(
    ceiling=st.integers(1, 16),
    events=st.lists(st.sampled_from(["ok", "429", "503"]), min_size=1, max_size=60),
)
def test_in_flight_never_exceeds_the_limit(ceiling, events):
    async def scenario() -> None:
        limiter = EndpointLimiter(ceiling)
        peak = 0
        outcomes = iter(events * 3)

        async def task() -> None:
            nonlocal peak
            async with limiter.slot() as ticket:
                peak = max(peak, limiter.in_flight)
                await asyncio.sleep(0)
                outcome = next(outcomes, "ok")
                if outcome == "429":
                    limiter.on_refused(ticket, Refusal.RATE, retry_after=0)
                elif outcome == "503":
                    limiter.on_refused(ticket, Refusal.OVERLOAD)
                else:
                    limiter.on_success(ticket, 0.0)

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


# --- against the test servers, counted --------------------------------------------------


def test_a_random_429_retries_alone_after_its_retry_after(llm_server, llm_client):
    """The first request is refused with Retry-After 0.4 s: it alone waits, the other 19
    are answered meanwhile, and the server sees exactly 21 requests."""
    llm_server.set_script(Script(fault_sequence=["429"], retry_after_s=0.4, latency_ms=20))
    client = llm_client(max_concurrency=4)
    started, done_at = time.monotonic(), {}
    results = client.complete_many(
        requests(20), on_result=lambda i, _r: done_at.setdefault(i, time.monotonic() - started)
    )
    assert all(r.ok for r in results)
    assert llm_server.stats.chat_requests == 21
    (refused,) = [i for i, r in enumerate(results) if r.attempts == 2]
    assert done_at[refused] >= 0.4
    others = [t for i, t in done_at.items() if i != refused]
    assert max(others) < 0.35  # 19 answers at 4 at a time: nobody waited for the refused one
    summary = client.limiter.summary()
    assert summary["refusals"]["rate"] == 1 and summary["quota_pauses"] == 0
    assert summary["limit"] == 4


def test_a_requests_quota_is_paced_so_only_the_first_burst_is_refused(llm_server, llm_client):
    """600 requests a minute (10 a second), bursts of 2. The client knows nothing before
    its first answers: of its first 4 sends, 2 fit and 2 are refused as quota-spent. From
    then on it paces from the headers and nothing else is refused."""
    llm_server.set_script(Script(quota=Quota(requests_per_minute=600, burst_s=0.2)))
    client = llm_client(max_concurrency=4)
    started = time.monotonic()
    results = client.complete_many(requests(12))
    took = time.monotonic() - started
    assert all(r.ok for r in results)
    assert llm_server.stats.refusals == {"quota": 2}
    assert llm_server.stats.chat_requests == 12 + 2
    assert took >= (12 - 2) / 10 * 0.9  # served at the quota, not faster
    assert client.limiter.summary()["limit"] == 4  # a quota is no capacity signal


def test_a_tokens_quota_counts_prompt_and_max_tokens(llm_server, llm_client):
    """6,000 tokens a minute (100 a second), buckets of 100: each request costs its
    prompt (1 token) + max_tokens 40, so two fit at a time; the client paces after the
    first refusals."""
    llm_server.set_script(Script(quota=Quota(tokens_per_minute=6000, burst_s=1.0)))
    client = llm_client(max_concurrency=4)
    results = client.complete_many(requests(10, max_tokens=40))
    assert all(r.ok for r in results)
    assert llm_server.stats.refusals == {"quota": 2}
    assert llm_server.stats.chat_requests == 10 + 2


def test_429s_beyond_the_servers_capacity_lower_the_concurrency(llm_server, llm_client):
    """The server serves 8 at once and refuses the rest at once: the client (ceiling 32)
    drops to about what the server holds, every request is answered, and the refusals
    stay a fraction of what a fixed concurrency of 32 would cause (about 3 of every 4
    sends). (In this process, beside the server: benchmarks/rate_limits.py measures it
    against a server in its own process.)"""
    llm_server.set_script(
        Script(latency_ms=100, concurrency=8, over_capacity="429", retry_after_s=0.2)
    )
    client = llm_client(max_concurrency=32, max_retries=10)
    results = client.complete_many(requests(240, "burst"))
    assert all(r.ok for r in results)
    summary = client.limiter.summary()
    assert summary["decreases"] >= 1 and summary["limit"] <= 12
    assert llm_server.stats.max_in_flight <= 8 and llm_server.stats.completed == 240
    assert llm_server.stats.refusals["capacity"] <= 240 * 0.6


def test_overloads_back_off_and_nothing_is_lost(
    llm_server, llm_client, anthropic_server, monkeypatch
):
    """503 (OpenAI-compatible) and 529 overloaded_error (Anthropic): each is retried, the
    concurrency backs off, and each server sees exactly the refused ones again."""
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "k")
    llm_server.set_script(Script(fault_sequence=["503", "503", "503"], latency_ms=10))
    client = llm_client(max_concurrency=16)
    assert all(r.ok for r in client.complete_many(requests(30)))
    assert llm_server.stats.chat_requests == 33 and llm_server.stats.refusals == {"503": 3}
    assert client.limiter.summary()["decreases"] >= 1

    from tasks.llm.client import make_client
    from tests.plugins.llm_server import FAST_RETRY

    anthropic_server.set_script(Script(models=["claude-haiku-4-5"], fault_sequence=["529", "529"]))
    with make_client(
        "anthropic",
        model="claude-haiku-4-5",
        base_url=anthropic_server.base_url,
        api_key_env="TEST_ANTHROPIC_KEY",
        retry=FAST_RETRY,
    ) as claude:
        assert all(r.ok for r in claude.complete_many(requests(10, "claude")))
        assert claude.limiter.summary()["refusals"]["overload"] == 2
    assert anthropic_server.stats.chat_requests == 12


def test_anthropic_quota_headers_pace_the_client(anthropic_server, monkeypatch):
    from tasks.llm.client import make_client
    from tests.plugins.llm_server import FAST_RETRY

    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "k")
    anthropic_server.set_script(
        Script(models=["claude-haiku-4-5"], quota=Quota(requests_per_minute=600, burst_s=0.2))
    )
    with make_client(
        "anthropic",
        model="claude-haiku-4-5",
        base_url=anthropic_server.base_url,
        api_key_env="TEST_ANTHROPIC_KEY",
        retry=FAST_RETRY,
        max_concurrency=4,
    ) as claude:
        assert all(r.ok for r in claude.complete_many(requests(12, "paced")))
    assert anthropic_server.stats.refusals == {"quota": 2}
    assert anthropic_server.stats.chat_requests == 14


def test_rate_limit_retries_are_bounded_too(llm_server, llm_client):
    llm_server.set_script(Script(fault_sequence=["429"] * 50, retry_after_s=0))
    result = llm_client(max_retries=1).complete_many(requests(1))[0]
    assert not result.ok and "rate limited" in (result.error or "")
    assert result.attempts == 1 + 1 * RetryPolicy().rate_limit_factor
    assert llm_server.stats.chat_requests == result.attempts
