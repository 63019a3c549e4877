"""How long an endpoint has been refusing connections.

A stopped or restarting server refuses every connection at once, so counting each
request's refusals against its retry budget would reject every row in flight within
seconds. Instead, requests wait while the endpoint's outage is younger than
``ProviderSpec.max_outage_s`` and then stop the run with one clear error. The clock is
per endpoint and lives on the LLM loop thread (no locking), like the limiters.
"""

from __future__ import annotations

import time

POLL_S = 1.0  # how often a waiting request tries the endpoint again


class Outage:
    def __init__(self) -> None:
        self.since: float | None = None

    def down(self) -> float:
        """Note a refused connection; seconds since the outage began."""
        now = time.monotonic()
        if self.since is None:
            self.since = now
        return now - self.since

    def up(self) -> None:
        """An answer came back: the outage, if any, is over."""
        self.since = None


_outages: dict[tuple[str, str], Outage] = {}


def outage_for(provider: str, base_url: str) -> Outage:
    return _outages.setdefault((provider, base_url), Outage())
