"""Fixtures for the LLM layer: the test LLM servers (test doubles, not models) and
clients pointed at them with fast back-off."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tasks.llm.client import LLMClient, make_client
from tasks.llm.concurrency import RetryPolicy
from winnow.testing.anthropic_server import AnthropicTestServer
from winnow.testing.llm_server import LLMTestServer, Script

FAST_RETRY = RetryPolicy(base_s=0.01, cap_s=0.05, default_rate_limit_wait_s=0.01)


@pytest.fixture
def llm_server() -> Iterator[LLMTestServer]:
    """An OpenAI-compatible test server in a thread; ``.base_url``, ``.stats``, and
    ``.set_script(Script(...))`` to script it."""
    with LLMTestServer(Script()) as server:
        yield server


@pytest.fixture
def anthropic_server() -> Iterator[AnthropicTestServer]:
    """The Anthropic Messages API test double in a thread."""
    with AnthropicTestServer(Script(models=["claude-haiku-4-5"])) as server:
        yield server


@pytest.fixture
def llm_client(llm_server: LLMTestServer) -> Iterator[Callable[..., LLMClient]]:
    """Factory of clients for ``llm_server`` (fast retries); all closed at teardown."""
    clients: list[LLMClient] = []

    def factory(**fields: Any) -> LLMClient:
        fields.setdefault("retry", FAST_RETRY)
        fields.setdefault("model", "test-model")
        fields.setdefault("timeout_s", 5.0)
        client = make_client("openai-compatible", base_url=llm_server.base_url, **fields)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()
