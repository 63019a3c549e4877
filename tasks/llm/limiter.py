"""How many requests an endpoint gets, and when: one limiter per (provider, URL, model).

Hosted APIs refuse requests for different reasons, and each needs its own answer. A
client that treats every refusal the same (pause everyone, halve the concurrency) spends
most of its time idle when refusals are random; one that ignores them all keeps hitting a
spent quota. The limiter tells them apart:

- **A spent quota** (a 429 whose rate-limit headers say ``remaining = 0``): everyone waits
  until the reset the server announced, since every request would be refused.
- **Pacing ahead of a quota**: every answer's headers (``x-ratelimit-*``,
  ``anthropic-ratelimit-*``) give the remaining requests and tokens; the limiter keeps a
  copy of the server's buckets (:class:`QuotaPacer`: refilled at ``limit / 60`` per
  second, charged a request's prompt plus ``max_tokens`` as it leaves) and holds a send
  until the bucket has room, so few requests are refused in the first place.
- **Capacity** (503, Anthropic's 529 ``overloaded_error``, and 429s that track the number
  in flight): the concurrency backs off (AIMD). A 429 that is not a quota's could be
  either random (a shared gateway, a noisy neighbour) or caused by our concurrency; the
  :class:`CapacityProbe` finds out by trying: when the share of 429s in a window of
  answers rises, it lowers the concurrency to what the server actually served; if the
  share then drops, the 429s were capacity and the lower limit stays; if it does not,
  they were random, the old limit comes back and that share is learnt as background.
- **Anything else that was refused** (a random 429 with ``Retry-After``): only that
  request waits, outside its slot; the others keep going.

Sends are also paced by latency (``latency / limit`` apart) so that requests sent
together do not come back together and queue on the one loop thread.

Lives on the LLM loop thread (:mod:`tasks.llm.concurrency`); not thread-safe by design.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum

from tasks.llm.ratelimits import Budget, RateLimits

PACING_BURST = 4  # sends that may go back to back after a late pacing timer


class Refusal(StrEnum):
    RATE = "rate"  # a 429 whose headers do not say the quota is spent
    QUOTA = "quota"  # a 429 whose headers say the quota is spent
    OVERLOAD = "overload"  # 503, 529: the server is over capacity


@dataclass
class Ticket:
    """One granted send: when it left and what it was charged against the quota."""

    sent_at: float
    prompt_estimate: float  # the prompt's tokens as estimated before sending
    cost_tokens: float  # what was charged: prompt (calibrated) + max_tokens
    marks: dict[str, float] = field(default_factory=dict)  # quota sent-totals after it


class QuotaPacer:
    """A copy of the server's token buckets (requests and tokens), kept from headers.

    An answer's headers give the bucket as the server saw it when that request arrived
    (about when it was sent). What was sent after it has not been counted yet, and the
    bucket has refilled since, so the level now is ``remaining + rate × elapsed − sent
    after``. Only the freshest answer (the latest-sent request) resyncs the level."""

    DIMENSIONS = ("requests", "tokens")

    def __init__(self) -> None:
        self.limit: dict[str, float] = {}
        self.rate: dict[str, float] = {}
        self.level: dict[str, float] = {}
        self.stamp: dict[str, float] = {}
        self.synced_at: dict[str, float] = {}
        self.sent: dict[str, float] = dict.fromkeys(self.DIMENSIONS, 0.0)
        # Headroom kept in the buckets, as a share of a send's cost: it grows when the
        # server refuses what the copy said would fit, and shrinks as sends succeed.
        self.margin = 0.0

    @property
    def known(self) -> bool:
        return bool(self.rate)

    def _level(self, dim: str, now: float) -> float:
        return min(self.limit[dim], self.level[dim] + self.rate[dim] * (now - self.stamp[dim]))

    def _costs(self, tokens: float) -> dict[str, float]:
        return {"requests": 1.0, "tokens": tokens}

    def wait_s(self, tokens: float, now: float) -> float:
        """Seconds until both buckets hold what a send of ``tokens`` would take."""
        wait = 0.0
        for dim, cost in self._costs(tokens).items():
            if dim not in self.rate:
                continue
            short = min(cost * (1 + self.margin), self.limit[dim]) - self._level(dim, now)
            if short > 0:
                wait = max(wait, short / self.rate[dim])
        return wait

    def take(self, tokens: float, now: float) -> dict[str, float]:
        for dim, cost in self._costs(tokens).items():
            self.sent[dim] += cost
            if dim in self.rate:
                self.level[dim] = self._level(dim, now) - cost
                self.stamp[dim] = now
        return dict(self.sent)

    def sync(self, limits: RateLimits, ticket: Ticket, now: float) -> None:
        for dim in self.DIMENSIONS:
            budget: Budget | None = getattr(limits, dim)
            if budget is None or ticket.sent_at < self.synced_at.get(dim, -math.inf):
                continue
            rate = budget.per_second
            after = self.sent[dim] - ticket.marks.get(dim, self.sent[dim])
            level = budget.remaining + rate * (now - ticket.sent_at) - after
            self.limit[dim], self.rate[dim] = budget.limit, rate
            self.level[dim], self.stamp[dim] = min(budget.limit, level), now
            self.synced_at[dim] = ticket.sent_at

    def drain(self, now: float) -> None:
        """A refusal said the quota is spent: empty the copy too, and keep more headroom
        if the copy had said the send would fit."""
        if self.known:
            self.margin = min(0.5, self.margin + 0.05)
        for dim in self.rate:
            self.level[dim], self.stamp[dim] = min(self.level[dim], 0.0), now

    def relax(self) -> None:
        self.margin *= 0.995


class CapacityProbe:
    """Decides, a window of sends at a time, whether 429s track the concurrency.

    A refusal comes back at once and a success a latency later, so the answers that
    arrived first always over-count refusals. The probe therefore counts by *send*: an
    outcome is counted once its request is mature (sent 1.5 latencies ago, so that its
    success, if any, is in). A window holds the mature sends of at least two latencies
    and about ``limit`` requests, all sent after it began (older ones say nothing of the
    current limit).

    When a window's share of 429s exceeds the learnt background share by more than chance
    allows, the limit is put on trial at the concurrency the server actually served
    (successful sends per second × latency, Little's law), at least 10% lower. The next
    window judges the trial by the rate of 429s per second: halved or better → the 429s
    tracked the concurrency (capacity): keep the lower limit; not → they were random:
    restore the limit and learn their share as background, so they trigger nothing again.
    When half the sends or more are refused, waiting for a whole window would let every
    queued request be refused once: the limit drops at once to the requests still in
    flight, which is what the server holds (:meth:`swamped`).
    Without excess 429s the limit probes upwards: it doubles a window until a capacity is
    found (the limiter starts at ``START`` sends at most, not at its ceiling: a first
    burst far above a server's capacity would be mostly refused), then grows by one
    every few windows (each probe above a real capacity costs a window of refusals)."""

    MARGIN = 0.05  # refusals above background that count as a signal
    START = 64  # the limit of a new endpoint, before any answer (slow start)
    PROBE_EVERY = 3  # windows between probes once a capacity was found
    MATURE = 1.5  # latencies after its send when a request's outcome counts

    def __init__(self) -> None:
        self.pending: list[tuple[float, bool]] = []  # a heap of (sent_at, refused)
        self.started = time.monotonic()
        # every send of the window and its refusals so far, mature or not: refusals come
        # back at once, so refused / sent is a floor under the window's final share
        self.sent_now = 0
        self.refused_now = 0
        self.sends = 0
        self.refused = 0
        self.first_sent: float | None = None
        self.last_sent = 0.0
        self.background = 0.0
        self.trial: tuple[float, float] | None = None  # (limit before, 429s a second)
        self.capacity: float | None = None  # the concurrency a trial confirmed
        # A flood of refusals ends the slow start without confirming a capacity: the
        # limit it cut to is only a bound from above, no floor for later trials.
        self.slow_start = True
        self.calm_windows = 0

    def sent(self, at: float) -> None:
        if at >= self.started:
            self.sent_now += 1

    def record(self, sent_at: float, refused: bool, latency_s: float | None) -> None:
        if sent_at >= self.started:
            heapq.heappush(self.pending, (sent_at, refused))
            self.refused_now += refused
        if latency_s is None:
            return
        horizon = time.monotonic() - self.MATURE * latency_s
        while self.pending and self.pending[0][0] <= horizon:
            sent, was_refused = heapq.heappop(self.pending)
            if sent < self.started:
                continue
            if self.first_sent is None:
                self.first_sent = sent
            self.last_sent = sent
            self.sends += 1
            self.refused += was_refused

    def _span(self) -> float:
        """Seconds of sends the counted requests cover (an average gap included)."""
        span = (self.last_sent - (self.first_sent or self.last_sent)) * self.sends
        return max(1e-3, span / max(1, self.sends - 1))

    def refused_share(self) -> float:
        """The share of this window's sends refused so far (a floor: successes come later)."""
        return self.refused_now / max(1, self.sent_now)

    def swamped(self, limit: float) -> bool:
        """Half or more of the window's sends (a quarter of a window at least) were
        refused already: too many to wait for the window's end (the background share of
        random 429s excepted)."""
        floor = self.refused_share()
        enough = self.sent_now >= max(8, limit / 4)
        return enough and floor >= max(0.5, self.background + 0.3)

    def cut(self, limit: float, latency_s: float | None) -> None:
        """A cut under a flood of 429s: a new window from one round trip on (until then
        the server is still busy with what was sent before), no more doubling."""
        self.slow_start = False
        self.trial = None
        self._new_window(latency_s or 0.0)

    def _new_window(self, delay_s: float = 0.0) -> None:
        self.sends = self.refused = self.sent_now = self.refused_now = 0
        self.first_sent = None
        self.started = time.monotonic() + delay_s

    def due(self, limit: float, latency_s: float | None) -> bool:
        """A window closes when its counted sends span two latencies and number about
        ``limit`` (so its successes per second are a fair measure)."""
        if latency_s is None or self.first_sent is None:
            return False
        return self._span() >= 2 * latency_s and self.sends >= max(8, int(limit))

    def judge(
        self, limit: float, floor: float, ceiling: float, latency_s: float | None
    ) -> tuple[float, str]:
        """The next limit and what happened (``"trial"``, ``"capacity"``, ``"random"``,
        ``"probe"``, ``"steady"``); starts a new window."""
        share = self.refused / max(1, self.sends)
        span = self._span()
        refused_per_s = self.refused / span
        served = (self.sends - self.refused) / span * (latency_s or 0.0)
        p = max(self.background, 0.02)
        noise = 2 * math.sqrt(p * (1 - p) / max(1, self.sends))
        self._new_window()
        if self.trial is not None:
            before, refused_before = self.trial
            self.trial = None
            if refused_per_s <= refused_before * 0.5 or share <= self.background + self.MARGIN:
                self.capacity = limit
                return limit, "capacity"
            self.background = share if self.background == 0 else (self.background + share) / 2
            return before, "random"
        if share > self.background + self.MARGIN + noise:
            self.trial = (limit, refused_per_s)
            self.calm_windows = 0
            trial = served if served > 0 else limit * (1 - share)
            if self.capacity is not None:  # Little's law is noisy: not far below the last
                trial = max(trial, 0.9 * self.capacity)
            return max(floor, min(trial, limit * 0.9)), "trial"
        if share < self.background:
            self.background = 0.8 * self.background + 0.2 * share
        self.calm_windows += 1
        if limit >= ceiling:
            return limit, "steady"
        if self.slow_start and self.capacity is None:  # double until refusals say stop
            return min(ceiling, max(limit + 1.0, limit * 2)), "probe"
        if self.calm_windows % self.PROBE_EVERY == 0:
            return min(ceiling, limit + 1.0), "probe"
        return limit, "steady"


class EndpointLimiter:
    """Concurrency, pauses, quota pacing and latency pacing for one endpoint."""

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
        self.limit = float(min(ceiling, CapacityProbe.START))
        self.in_flight = 0
        self.paused_until = 0.0
        self.max_pause_s = max_pause_s
        self.pacing_headroom = pacing_headroom
        self.latency_ewma: float | None = None
        self.next_send_at = 0.0
        self.quota = QuotaPacer()
        self.probe = CapacityProbe()
        # Tokens a prompt really costs per token estimated (from the answers' usage).
        self.prompt_ratio = 1.0
        self.last_decrease = -math.inf
        # what happened, for tests, benchmarks and the run's summary
        self.refusals: dict[str, int] = dict.fromkeys([r.value for r in Refusal], 0)
        self.decreases = 0
        self.restores = 0
        self.quota_pauses = 0
        self.min_limit_seen = float(ceiling)
        self._waiters: deque[tuple[asyncio.Future[Ticket], float, float]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def current(self) -> int:
        return max(self.floor, int(self.limit))

    # --- slots ---

    async def acquire(
        self, prompt_tokens: float = 0.0, max_tokens: float = 0.0, retry: bool = False
    ) -> Ticket:
        """Wait for a slot (first come, first served, but a retry goes first: it already
        waited its turn and its back-off, and left last it would be a run's slow tail);
        the ticket of the send. The request costs its prompt (estimated, then
        calibrated) plus ``max_tokens``."""
        now = time.monotonic()
        cost = prompt_tokens * self.prompt_ratio + max_tokens
        if not self._waiters and self.in_flight < self.current and now >= self._ready_at(cost, now):
            return self._grant(now, prompt_tokens, cost)
        waiter: asyncio.Future[Ticket] = asyncio.get_running_loop().create_future()
        if retry:
            self._waiters.appendleft((waiter, prompt_tokens, cost))
        else:
            self._waiters.append((waiter, prompt_tokens, cost))
        self._wake()  # grants it at once if a slot is free, or arms the timer
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.in_flight -= 1  # granted and cancelled at once: give the slot back
                self._wake()
            else:
                self._waiters = deque(w for w in self._waiters if w[0] is not waiter)
            raise

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    @asynccontextmanager
    async def slot(
        self, prompt_tokens: float = 0.0, max_tokens: float = 0.0, retry: bool = False
    ) -> AsyncIterator[Ticket]:
        ticket = await self.acquire(prompt_tokens, max_tokens, retry)
        try:
            yield ticket
        finally:
            self.release()

    def _ready_at(self, tokens: float, now: float) -> float:
        return max(self.paused_until, self.next_send_at, now + self.quota.wait_s(tokens, now))

    def _grant(self, now: float, prompt_tokens: float, tokens: float) -> Ticket:
        self.in_flight += 1
        if self.latency_ewma is not None:
            gap = self.latency_ewma / self.current / self.pacing_headroom
            # A token bucket of a few sends: a timer that fires late (a busy loop or
            # machine) lets the sends it held back catch up instead of losing the time.
            self.next_send_at = max(now - PACING_BURST * gap, self.next_send_at) + gap
        marks = self.quota.take(tokens, now)
        self.probe.sent(now)
        return Ticket(sent_at=now, prompt_estimate=prompt_tokens, cost_tokens=tokens, marks=marks)

    def _wake(self) -> None:
        """Grant free slots to the first waiters; while held back, arm a timer."""
        now = time.monotonic()
        while self._waiters and self.in_flight < self.current:
            waiter, prompt_tokens, cost = self._waiters[0]
            if waiter.done():
                self._waiters.popleft()
                continue
            ready = self._ready_at(cost, now)
            if now < ready:
                self._arm(ready - now)
                return
            self._waiters.popleft()
            waiter.set_result(self._grant(now, prompt_tokens, cost))

    def _arm(self, delay: float) -> None:
        if self._timer is not None:
            if self._timer.when() <= asyncio.get_running_loop().time() + delay:
                return
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._wake()

    # --- what the answers say ---

    def on_success(
        self,
        ticket: Ticket | None = None,
        latency_s: float | None = None,
        limits: RateLimits | None = None,
        prompt_tokens: int = 0,
    ) -> None:
        """An answer: its latency, the quota its headers reported, and the prompt tokens
        its usage counted (which calibrate the estimate of later prompts)."""
        if latency_s is not None:
            ewma = self.latency_ewma
            self.latency_ewma = latency_s if ewma is None else 0.9 * ewma + 0.1 * latency_s
        if ticket is not None and prompt_tokens > 0 and ticket.prompt_estimate > 0:
            seen = min(8.0, max(0.25, prompt_tokens / ticket.prompt_estimate))
            self.prompt_ratio = 0.8 * self.prompt_ratio + 0.2 * seen
        if limits is not None and ticket is not None:
            self.quota.sync(limits, ticket, time.monotonic())
            self.quota.relax()
        if ticket is not None:
            self.probe.record(ticket.sent_at, False, self.latency_ewma)
        self._window()

    def on_refused(
        self,
        ticket: Ticket,
        kind: Refusal,
        retry_after: float | None = None,
        limits: RateLimits | None = None,
    ) -> None:
        """A refusal of ``kind``. Its ``retry_after`` is the request's own wait unless the
        quota is spent, when every send waits that long (or until the announced reset)."""
        self.refusals[kind.value] += 1
        now = time.monotonic()
        if limits is not None:
            self.quota.sync(limits, ticket, now)
        if kind is Refusal.QUOTA:
            self.quota.drain(now)
            wait = retry_after if retry_after is not None else (limits and limits.refill_s())
            self._pause(now, wait if wait is not None else 1.0)
        elif kind is Refusal.OVERLOAD:
            self._decrease(ticket.sent_at, 0.7)
        else:
            self.probe.record(ticket.sent_at, True, self.latency_ewma)
            if self.probe.swamped(self.limit) and ticket.sent_at >= self.last_decrease:
                # Most sends refused: every queued request would be refused once before
                # the window can judge. Cut now, once per round trip, to what the server
                # holds: no more than the requests still in flight (the refused ones
                # left at once) and, in the first burst (the slow start, where retries
                # keep the slots full), halved at least.
                self.last_decrease = now
                self.decreases += 1
                cut = min(self.limit * 0.9, self.in_flight - 1)
                if self.probe.slow_start and self.probe.capacity is None:
                    cut = min(cut, self.limit * 0.5)
                self._set_limit(cut)
                self.probe.cut(self.limit, self.latency_ewma)
                return
            self._window()

    def _window(self) -> None:
        if not self.probe.due(self.limit, self.latency_ewma):
            return
        new, what = self.probe.judge(
            self.limit, float(self.floor), float(self.ceiling), self.latency_ewma
        )
        if what == "trial":
            self.decreases += 1
            self.last_decrease = time.monotonic()
        elif what == "random":
            self.restores += 1
        self._set_limit(new)

    def _decrease(self, sent_at: float, factor: float) -> bool:
        """Multiplicative decrease, once per window of requests: only a request sent after
        the last decrease can cause another (a burst of refusals from one overload counts
        once). Whether it decreased."""
        if sent_at < self.last_decrease:
            return False
        self.last_decrease = time.monotonic()
        self.decreases += 1
        self._set_limit(max(float(self.floor), self.limit * factor))
        return True

    def _pause(self, now: float, seconds: float) -> None:
        until = now + min(max(seconds, 0.0), self.max_pause_s)
        if until > self.paused_until:
            self.paused_until = until
            self.quota_pauses += 1
            self._wake()

    def _set_limit(self, limit: float) -> None:
        self.limit = min(float(self.ceiling), max(float(self.floor), limit))
        self.min_limit_seen = min(self.min_limit_seen, self.limit)
        self._wake()

    def set_ceiling(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self.limit = min(self.limit, float(ceiling))
        self._wake()

    def summary(self) -> dict[str, object]:
        return {
            "limit": self.current,
            "ceiling": self.ceiling,
            "min_limit": int(self.min_limit_seen),
            "refusals": dict(self.refusals),
            "decreases": self.decreases,
            "restores": self.restores,
            "quota_pauses": self.quota_pauses,
            "background_429_share": round(self.probe.background, 3),
        }


_limiters: dict[tuple[str, str, str], EndpointLimiter] = {}


def shared_limiter(provider: str, base_url: str, model: str, ceiling: int) -> EndpointLimiter:
    """The one limiter of an endpoint in this process. Call on the LLM loop thread.

    The ceiling is the most recent client's ``max_concurrency``.
    """
    key = (provider, base_url, model)
    limiter = _limiters.get(key)
    if limiter is None:
        limiter = _limiters[key] = EndpointLimiter(ceiling)
    elif limiter.ceiling != ceiling:
        limiter.set_ceiling(ceiling)
    return limiter


def forget_limiters() -> None:
    """A new event loop (after a fork) starts with fresh limiters."""
    _limiters.clear()


def endpoint_profile(provider: str, base_url: str, model: str) -> dict[str, float | None] | None:
    """What this process learnt of an endpoint (None if it sent nothing there): the
    concurrency its limiter allows, and the per-minute quotas its rate-limit headers
    reported (None where none was sent). What a preview paces the full run by."""
    limiter = _limiters.get((provider, base_url, model))
    if limiter is None:
        return None
    # the limit starts low and grows to the ceiling unless the server refuses: a short
    # preview rarely sees it grown, so the ceiling is the honest figure then
    concurrency = limiter.current if limiter.decreases else limiter.ceiling
    return {
        "concurrency": float(concurrency),
        "requests_per_min": limiter.quota.limit.get("requests"),
        "tokens_per_min": limiter.quota.limit.get("tokens"),
    }
