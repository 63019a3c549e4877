"""The Anthropic adapter through the real SDK against the Messages API test double."""

from __future__ import annotations

import pytest

from tasks.llm.base import ChatRequest, ConfigError, GenerationParams, Message
from tasks.llm.client import make_client
from tests.plugins.llm_server import FAST_RETRY
from winnow.testing.llm_server import Rule, Script


@pytest.fixture
def anthropic_key(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")


def request(text: str, **params: object) -> ChatRequest:
    return ChatRequest(
        messages=[
            Message(role="system", content="You are terse."),
            Message(role="user", content=text),
        ],
        params=GenerationParams(**params),  # type: ignore[arg-type]
    )


def client_for(server, **fields):
    fields.setdefault("retry", FAST_RETRY)
    return make_client("anthropic", model="claude-haiku-4-5", base_url=server.base_url, **fields)


def test_completes_with_usage_and_cost(anthropic_server, anthropic_key):
    client = client_for(anthropic_server)
    [result] = client.complete_many([request("hello there friend")])
    assert result.ok and result.text == "echo: hello there friend"
    assert result.provider == "anthropic" and result.model == "claude-haiku-4-5"
    assert result.finish_reason == "end_turn"
    # "system: You are terse." + "user: hello there friend": 4 + 4 words
    assert result.usage.prompt_tokens == 8 and result.usage.completion_tokens == 4
    assert result.cost_usd == pytest.approx((8 * 1.0 + 4 * 5.0) / 1e6)
    # The system prompt went in the `system` field, counted as a leading system message.
    assert anthropic_server.stats.count_for(request("hello there friend").messages) == 1


def test_json_mode_and_retries(anthropic_server, anthropic_key):
    anthropic_server.set_script(
        Script(
            models=["claude-haiku-4-5"],
            fault_sequence=["429", "500", "truncated"],
            retry_after_s=0,
            rules=[Rule(pattern="single JSON object", replies=['{"ok": true}'])],
        )
    )
    client = client_for(anthropic_server, max_retries=3)
    [result] = client.complete_many([request("give json", json_mode=True, top_p=0.9)])
    assert result.ok and result.text == '{"ok": true}' and result.attempts == 4


def test_unknown_model_and_missing_key(anthropic_server, anthropic_key, monkeypatch):
    bad = make_client("anthropic", model="claude-nope", base_url=anthropic_server.base_url)
    with pytest.raises(ConfigError, match="claude-nope"):
        bad.complete_many([request("x")])
    assert anthropic_server.stats.chat_requests == 0
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        client_for(anthropic_server).check()


def test_journal_reuse(anthropic_server, anthropic_key):
    requests = [request(f"q{i}") for i in range(5)]
    client_for(anthropic_server).complete_many(requests)
    again = client_for(anthropic_server).complete_many(requests)
    assert all(r.cached for r in again)
    assert anthropic_server.stats.chat_requests == 5
