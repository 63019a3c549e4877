"""Generation probabilities recorded for free: the answer's mean token log-probability and
perplexity, from the same request, in the result, the journal (old journal files gain the
columns) and a stage's provenance."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pytest

from tasks.llm.base import ChatRequest, GenerationParams, Logprobs, Message
from tasks.llm.client import make_client
from tasks.llm.journal import Journal, JournalEntry
from tasks.llm.local_provider import TokenLogprobRecorder
from tasks.llm.openai_provider import chat_logprobs
from tests.plugins.llm_server import FAST_RETRY
from winnow.testing.llm_server import TOY_NEW, TOY_SEEN, Rule, Script


def req(text: str) -> ChatRequest:
    return ChatRequest(
        messages=[Message(role="user", content=text)],
        params=GenerationParams(temperature=0.0),
        template="t",
        template_version="1",
    )


def test_logprobs_summary_mean_and_perplexity():
    lp = Logprobs.of([math.log(0.5), math.log(0.125), None])  # type: ignore[list-item]
    assert lp is not None and lp.tokens == 2
    assert lp.mean_logprob == pytest.approx((math.log(0.5) + math.log(0.125)) / 2)
    assert lp.perplexity == pytest.approx(4.0)  # geometric mean of 1/0.5 and 1/0.125
    assert Logprobs.of([]) is None
    assert chat_logprobs(None) is None
    assert chat_logprobs({"content": None}) is None


def test_openai_compatible_answer_carries_logprobs_into_journal(llm_server, llm_client, tmp_path):
    # The double's copy model: a word already in the prompt is log 0.5, a new one log 0.02.
    llm_server.set_script(Script(rules=[Rule(pattern="colour", replies=["red colour wins"])]))
    journal = Journal(tmp_path / "j.sqlite")
    client = llm_client(journal=journal)
    [result] = client.complete_many([req("name a colour")])
    assert result.ok and result.logprobs is not None
    # "red" new, "colour" seen in the prompt, "wins" new
    expected = (TOY_NEW + TOY_SEEN + TOY_NEW) / 3
    assert result.logprobs.tokens == 3
    assert result.logprobs.mean_logprob == pytest.approx(expected)
    entry = journal.get(result.key)
    assert entry is not None and entry.logprob_tokens == 3
    assert entry.mean_logprob == pytest.approx(expected)

    # A journal hit hands the same figures back with no request.
    sent = llm_server.stats.chat_requests
    again = llm_client(journal=journal)
    [cached] = again.complete_many([req("name a colour")])
    assert cached.cached and llm_server.stats.chat_requests == sent
    assert cached.logprobs == result.logprobs


def test_logprobs_can_be_turned_off_for_a_server_that_refuses_them(llm_server, tmp_path):
    client = make_client(
        "openai-compatible",
        model="test-model",
        base_url=llm_server.base_url,
        logprobs=False,
        retry=FAST_RETRY,
        journal=Journal(tmp_path / "j.sqlite"),
    )
    try:
        [result] = client.complete_many([req("hello there")])
    finally:
        client.close()
    assert result.ok and result.logprobs is None


def test_a_server_refusing_logprobs_is_asked_again_without_and_never_again(
    llm_server, llm_client, tmp_path
):
    llm_server.set_script(Script(refuse_logprobs=True))
    client = llm_client(journal=Journal(tmp_path / "j.sqlite"))
    first, second = client.complete_many([req("one")]), client.complete_many([req("two")])
    assert first[0].ok and second[0].ok
    assert first[0].logprobs is None and second[0].logprobs is None
    # one refused request, then the two answers: the refusal is not paid again
    assert llm_server.stats.faults["logprobs"] == 1
    assert llm_server.stats.chat_requests == 2


def test_an_old_journal_file_gains_the_columns_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE requests (
            key TEXT PRIMARY KEY, provider TEXT NOT NULL, model TEXT NOT NULL,
            template TEXT NOT NULL DEFAULT '', template_version TEXT NOT NULL DEFAULT '',
            text TEXT NOT NULL, finish_reason TEXT,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            latency_s REAL NOT NULL DEFAULT 0, cost_usd REAL NOT NULL DEFAULT 0,
            batch INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 1,
            request TEXT, created_at REAL NOT NULL);
        INSERT INTO requests (key, provider, model, text, created_at)
            VALUES ('old', 'local', 'm.gguf', 'an old answer', 1.0);
        """
    )
    db.commit()
    db.close()
    journal = Journal(path)
    old = journal.get("old")
    assert old is not None and old.text == "an old answer" and old.mean_logprob is None
    journal.put(
        JournalEntry(key="new", provider="local", model="m", text="x", mean_logprob=-0.5,
                     logprob_tokens=4)
    )  # fmt: skip
    journal.close()
    again = Journal(path)  # opening twice does not add the columns twice
    new = again.get("new")
    assert new is not None and new.mean_logprob == -0.5 and new.logprob_tokens == 4
    again.close()


def test_recorder_reads_the_sampled_tokens_probability_and_leaves_logits_alone():
    recorder = TokenLogprobRecorder()
    first = np.log(np.array([0.7, 0.2, 0.1], dtype=np.float32))
    second = np.array([0.0, 0.0, 0.0], dtype=np.float32)
    assert recorder(np.array([5]), first) is first  # sampling sees the same logits
    recorder(np.array([5, 1]), second)  # token 1 was sampled from `first`
    recorder(np.array([5, 1, 2]), second)  # token 2 was sampled from `second`
    assert recorder.logprobs == pytest.approx([math.log(0.2), math.log(1 / 3)], abs=1e-6)


@pytest.mark.slow
def test_embedded_model_returns_logprobs_of_its_own_answer(model_path, monkeypatch, tmp_path):
    monkeypatch.setenv("WINNOW_MODEL_PATH", str(model_path))
    journal = Journal(tmp_path / "j.sqlite")
    client = make_client("local", journal=journal)
    request = ChatRequest(
        messages=[Message(role="user", content="Say hello in three words.")],
        params=GenerationParams(temperature=0.0, max_tokens=12, seed=1),
    )
    [result] = client.complete_many([request])
    client.close()
    assert result.ok and result.logprobs is not None
    assert 1 <= result.logprobs.tokens <= result.usage.completion_tokens
    # Greedy decoding of a short answer: the model is fairly sure of each token.
    assert -3.0 < result.logprobs.mean_logprob < 0.0
    entry = journal.get(result.key)
    assert entry is not None and entry.mean_logprob == pytest.approx(result.logprobs.mean_logprob)


def test_provenance_of_a_stage_record_carries_mean_logprob_and_perplexity():
    from tasks.llm.base import ChatResult, ProviderSpec
    from tasks.pipeline.llm_stage import LLMConfig, provenance
    from tasks.pipeline.stage import RunInfo, StageContext

    config = LLMConfig(
        provider=ProviderSpec(kind="local"), template="t", template_version="1",
        params=GenerationParams(),
    )  # fmt: skip
    ctx = StageContext(run=RunInfo(run_id="r", recipe="x"), stage="answer")
    scored = ChatResult(key="k", text="a", logprobs=Logprobs(mean_logprob=-0.5, tokens=3))
    made = provenance(ctx, config, scored)
    assert made["mean_logprob"] == -0.5
    assert made["perplexity"] == pytest.approx(math.exp(0.5), abs=1e-6)
    plain = provenance(ctx, config, ChatResult(key="k", text="a"))
    assert plain["mean_logprob"] is None and plain["perplexity"] is None
