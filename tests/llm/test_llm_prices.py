"""Price table and cost accounting."""

from __future__ import annotations

import json
import logging

import pytest

from tasks.llm.base import ChatRequest, ConfigError, Message, Usage
from tasks.llm.prices import ModelPrice, PriceTable

MILLION = Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000)


def test_builtin_prices_and_dated_snapshots():
    table = PriceTable.load()
    assert table.cost("openai", "gpt-4o-mini", MILLION) == pytest.approx(0.75)
    # longest prefix wins: gpt-4o-mini-<date> is not priced as gpt-4o
    assert table.price("gpt-4o-mini-2024-07-18") == table.price("gpt-4o-mini")
    assert table.price("gpt-4o-2024-08-06") == table.price("gpt-4o")
    assert table.price("claude-sonnet-4-5-20250929") == ModelPrice(input=3.0, output=15.0)
    assert table.price("gpt-4omni") is None  # a prefix must end at a dash


def test_batch_discount():
    table = PriceTable.load()
    full = table.cost("openai", "gpt-4o", MILLION)
    assert table.cost("openai", "gpt-4o", MILLION, batch=True) == pytest.approx(full * 0.5)


def test_local_is_free_and_unknown_remote_warns_once(caplog):
    table = PriceTable.load()
    assert table.cost("local", "qwen.gguf", MILLION) == 0.0
    with caplog.at_level(logging.WARNING):
        assert table.cost("openai-compatible", "my-vllm-model", MILLION) == 0.0
        assert table.cost("openai-compatible", "my-vllm-model", MILLION) == 0.0
    assert sum("my-vllm-model" in r.message for r in caplog.records) == 1


def test_user_file_overrides_and_extends(tmp_path, monkeypatch):
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {
                "batch_discount": 0.25,
                "models": {
                    "my-vllm-model": {"input": 0.1, "output": 0.2},
                    "gpt-4o": {"input": 1.0, "output": 1.0},
                },
            }
        )
    )
    monkeypatch.setenv("WINNOW_PRICES", str(path))
    table = PriceTable.load()
    assert table.cost("openai-compatible", "my-vllm-model", MILLION) == pytest.approx(0.3)
    assert table.cost("openai", "gpt-4o", MILLION) == pytest.approx(2.0)
    assert table.cost("openai", "gpt-4o", MILLION, batch=True) == pytest.approx(0.5)
    assert table.price("gpt-4o-mini") is not None  # built-ins still there


def test_flat_user_file_and_bad_files(tmp_path):
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"m": {"input": 2, "output": 4}}))
    assert PriceTable.load(flat).price("m") == ModelPrice(input=2, output=4)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"models": {"m": {"input": -1, "output": 0}}}))
    with pytest.raises(ConfigError, match="bad price"):
        PriceTable.load(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        PriceTable.load(tmp_path / "missing.json")


def test_costs_are_recorded_per_request_and_in_the_journal(llm_server, llm_client):
    prices = PriceTable({"test-model": ModelPrice(input=1.0, output=2.0)})
    client = llm_client(prices=prices)
    requests = [
        ChatRequest(messages=[Message(role="user", content="one two three")]),
        ChatRequest(messages=[Message(role="user", content="four")]),
    ]
    results = client.complete_many(requests)
    # "user: one two three" = 4 prompt tokens; "echo: one two three" = 4 completion tokens
    assert results[0].cost_usd == pytest.approx((4 * 1.0 + 4 * 2.0) / 1e6)
    assert client.journal is not None
    totals = client.journal.totals([r.key for r in results])
    assert totals["cost_usd"] == pytest.approx(sum(r.cost_usd for r in results))
    assert totals["prompt_tokens"] == 4 + 2
    # A journal hit reports what the answer cost when it was paid for, marked cached.
    again = llm_client(prices=prices).complete_many(requests)
    assert [r.cost_usd for r in again] == [r.cost_usd for r in results]
    assert all(r.cached for r in again)


def test_batch_answers_are_recorded_at_the_discount(llm_server, llm_client):
    from tasks.llm.base import Completion

    prices = PriceTable({"test-model": ModelPrice(input=2.0, output=4.0)}, batch_discount=0.5)
    client = llm_client(prices=prices)
    client.check()
    request = ChatRequest(messages=[Message(role="user", content="from a batch job")])
    completion = Completion(text="batched", usage=Usage(prompt_tokens=1000, completion_tokens=500))
    recorded = client.record(request, completion, batch=True)
    assert recorded.cost_usd == pytest.approx((1000 * 2.0 + 500 * 4.0) / 1e6 * 0.5)
    assert client.journal is not None and client.journal.get(recorded.key).batch is True
    # The journaled batch answer serves later requests: nothing is sent.
    [again] = client.complete_many([request])
    assert again.cached and again.text == "batched"
    assert llm_server.stats.chat_requests == 0
