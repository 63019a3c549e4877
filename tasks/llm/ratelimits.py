"""What a provider's response headers say about its rate limits.

Hosted APIs describe their quota on every answer, successful or not:

- OpenAI (and servers that copy it): ``x-ratelimit-limit-requests`` /
  ``-remaining-requests`` / ``-reset-requests`` and the same for ``-tokens``; the reset is
  a duration (``"1s"``, ``"6m0s"``, ``"20ms"``) until the budget is full again;
- Anthropic: ``anthropic-ratelimit-requests-limit`` / ``-remaining`` / ``-reset`` and the
  same for ``tokens`` (and ``input-tokens``, ``output-tokens``); the reset is an RFC 3339
  time;
- a refusal adds ``retry-after`` (seconds) and sometimes ``retry-after-ms``.

Limits are per minute in both APIs and replenish continuously (a token bucket), so the
refill rate is ``limit / 60`` per second. :class:`RateLimits` is what the client's limiter
paces by (:mod:`tasks.llm.concurrency`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


class Budget(BaseModel):
    """One dimension of a quota (requests or tokens) at the moment of an answer."""

    limit: float
    remaining: float
    reset_s: float | None = None  # seconds until the budget is full again

    @property
    def per_second(self) -> float:
        return self.limit / 60.0

    @property
    def spent(self) -> bool:
        return self.remaining <= 0


class RateLimits(BaseModel):
    """The quota an answer reported (``None`` for a dimension it did not report)."""

    requests: Budget | None = None
    tokens: Budget | None = None

    @property
    def spent(self) -> bool:
        return any(b is not None and b.spent for b in (self.requests, self.tokens))

    def refill_s(self) -> float | None:
        """Seconds until a spent dimension has room again (its reset, or one request's
        or one token's worth of refill)."""
        waits = [
            b.reset_s if b.reset_s is not None else 1.0 / max(b.per_second, 1e-9)
            for b in (self.requests, self.tokens)
            if b is not None and b.spent
        ]
        return max(waits) if waits else None


def duration_s(text: str) -> float | None:
    """``"6m0s"`` → 360, ``"1.5s"`` → 1.5, ``"20ms"`` → 0.02, ``"2"`` → 2; else None."""
    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        return None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def _until_s(text: str, now: float) -> float | None:
    """Seconds from now until an RFC 3339 time, or a duration."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return duration_s(text)
    return max(0.0, when.timestamp() - now)


def _number(headers: Mapping[str, Any], name: str) -> float | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _budget(headers: Mapping[str, Any], names: tuple[str, str, str], now: float) -> Budget | None:
    limit, remaining = _number(headers, names[0]), _number(headers, names[1])
    if limit is None or remaining is None or limit <= 0:
        return None
    reset = headers.get(names[2])
    return Budget(limit=limit, remaining=remaining, reset_s=_until_s(reset, now) if reset else None)


def read_limits(headers: Mapping[str, Any] | None, now: float | None = None) -> RateLimits | None:
    """The quota in a response's headers (OpenAI or Anthropic style), or None."""
    if not headers:
        return None
    now = time.time() if now is None else now
    openai_names = {
        "requests": tuple(f"x-ratelimit-{k}-requests" for k in ("limit", "remaining", "reset")),
        "tokens": tuple(f"x-ratelimit-{k}-tokens" for k in ("limit", "remaining", "reset")),
    }
    anthropic_names = {
        kind: tuple(f"anthropic-ratelimit-{kind}-{k}" for k in ("limit", "remaining", "reset"))
        for kind in ("requests", "tokens", "input-tokens")
    }
    requests = _budget(headers, openai_names["requests"], now) or _budget(
        headers, anthropic_names["requests"], now
    )
    tokens = (
        _budget(headers, openai_names["tokens"], now)
        or _budget(headers, anthropic_names["tokens"], now)
        or _budget(headers, anthropic_names["input-tokens"], now)
    )
    if requests is None and tokens is None:
        return None
    return RateLimits(requests=requests, tokens=tokens)


def retry_after(headers: Mapping[str, Any] | None) -> float | None:
    """Seconds from ``retry-after-ms`` (preferred: finer) or ``retry-after`` (seconds, or
    an HTTP date)."""
    if not headers:
        return None
    ms = _number(headers, "retry-after-ms")
    if ms is not None:
        return max(0.0, ms / 1000.0)
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _number(headers, "retry-after")
    if seconds is not None:
        return max(0.0, seconds)
    try:
        from email.utils import parsedate_to_datetime

        return max(0.0, parsedate_to_datetime(str(value)).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
