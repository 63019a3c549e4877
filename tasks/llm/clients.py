"""One LLM client per provider spec per process, shared by every task thread.

Sharing matters: the client owns the adaptive concurrency limit, so every shard that
talks to the same provider and model backs off together when it answers 429.
"""

from __future__ import annotations

import atexit
import threading

from tasks.core.paths import journal_path
from tasks.llm.base import ProviderSpec
from tasks.llm.client import LLMClient

_lock = threading.Lock()
_clients: dict[str, LLMClient] = {}


def client_for(spec: ProviderSpec) -> LLMClient:
    # Keyed by the journal too: a client writes to the journal of the project it was
    # made for, and one process may work on several projects (tests do).
    key = f"{journal_path()}|{spec.model_dump_json()}"
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = LLMClient(spec)
            _clients[key] = client
        return client


def close_all() -> None:
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


# Close the shared clients before interpreter teardown: an HTTP session left open (aiohttp
# in particular) is reported as a leak on stderr at the end of every run.
atexit.register(close_all)
