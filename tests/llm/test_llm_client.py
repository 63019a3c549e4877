"""LLMClient against the OpenAI-compatible test server: journal reuse, retries, faults,
configuration errors, ordering and dedup."""

from __future__ import annotations

import threading
import time

import pytest

from tasks.llm.base import (
    ChatRequest,
    ChatResult,
    Completion,
    ConfigError,
    GenerationParams,
    Message,
    PermanentError,
    ProviderSpec,
    TransientError,
    Usage,
)
from tasks.llm.client import LLMClient, make_client
from tasks.llm.journal import Journal
from tests.plugins.llm_server import FAST_RETRY
from winnow.testing.llm_server import Rule, Script


def req(text: str, **params: object) -> ChatRequest:
    return ChatRequest(
        messages=[Message(role="user", content=text)],
        params=GenerationParams(**params),  # type: ignore[arg-type]
        template="t",
        template_version="1",
    )


def test_answers_in_order_and_records_usage(llm_server, llm_client):
    client = llm_client()
    results = client.complete_many([req(f"question {i}") for i in range(20)])
    assert [r.text for r in results] == [f"echo: question {i}" for i in range(20)]
    assert all(r.ok and not r.cached and r.attempts == 1 for r in results)
    assert results[3].usage == Usage(prompt_tokens=3, completion_tokens=3)
    assert client.name == "openai-compatible" and client.model == "test-model"
    assert llm_server.stats.chat_requests == 20


def test_journal_reuse_across_a_fresh_client_sends_nothing(llm_server, llm_client):
    requests = [req(f"q{i}") for i in range(30)]
    first = llm_client().complete_many(requests)
    assert llm_server.stats.chat_requests == 30

    seen: list[int] = []
    second = llm_client().complete_many(requests, on_result=lambda i, r: seen.append(i))
    assert llm_server.stats.chat_requests == 30  # zero new requests
    assert all(r.cached for r in second)
    assert [r.text for r in second] == [r.text for r in first]
    assert sorted(seen) == list(range(30))
    assert llm_server.stats.duplicates() == {}


def test_every_answer_is_journaled_before_it_is_handed_back(llm_server, llm_client, project_dir):
    client = llm_client()
    journal = Journal()  # a second connection, as another process would see it
    checked: list[bool] = []

    def on_result(i: int, result: ChatResult) -> None:
        checked.append(journal.get(result.key) is not None)

    client.complete_many([req(f"d{i}") for i in range(25)], on_result=on_result)
    assert checked == [True] * 25
    entry = journal.get(client.key(req("d7")))
    assert entry is not None
    assert entry.text == "echo: d7" and entry.template == "t" and entry.template_version == "1"
    assert entry.request is not None and entry.request["messages"][0]["content"] == "d7"
    assert (project_dir / ".winnow" / "journal.sqlite").exists()


def test_identical_requests_in_a_batch_are_sent_once(llm_server, llm_client):
    client = llm_client()
    same = req("same prompt")
    results = client.complete_many([same, req("other"), same, same])
    assert [r.text for r in results] == ["echo: same prompt", "echo: other"] + [
        "echo: same prompt"
    ] * 2
    assert llm_server.stats.count_for(same.messages) == 1


def test_samples_of_one_prompt_are_distinct_requests(llm_server, llm_client):
    base = req("draw")
    draws = [base.model_copy(update={"sample": i}) for i in range(3)]
    results = llm_client().complete_many(draws)
    assert len({r.key for r in results}) == 3
    assert llm_server.stats.count_for(base.messages) == 3


def test_threads_share_the_loop_and_never_send_a_request_twice(llm_server, llm_client):
    llm_server.set_script(Script(latency_ms=30))
    client = llm_client()
    requests = [req(f"shared {i}") for i in range(40)]
    outputs: list[list[ChatResult]] = []

    def work() -> None:
        outputs.append(client.complete_many(requests))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outputs) == 4 and all(all(r.ok for r in out) for out in outputs)
    assert llm_server.stats.chat_requests == 40
    assert llm_server.stats.duplicates() == {}


@pytest.mark.parametrize("fault", ["500", "malformed", "truncated"])
def test_transient_faults_are_retried(llm_server, llm_client, fault):
    llm_server.set_script(Script(fault_sequence=[fault, fault]))
    result = llm_client(max_retries=3).complete_many([req("x")])[0]
    assert result.ok and result.text == "echo: x"
    assert result.attempts == 3
    assert llm_server.stats.faults[fault] == 2


def test_hang_past_the_timeout_is_retried(llm_server, llm_client):
    llm_server.set_script(Script(fault_sequence=["hang"], hang_s=30))
    started = time.monotonic()
    result = llm_client(timeout_s=0.3, max_retries=2).complete_many([req("slow")])[0]
    assert result.ok and result.attempts == 2
    assert time.monotonic() - started < 5


def test_retries_are_bounded_and_the_failure_is_returned(llm_server, llm_client):
    llm_server.set_script(Script(rules=[Rule(pattern="doomed", replies=["!500"])]))
    client = llm_client(max_retries=2)
    results = client.complete_many([req("doomed"), req("fine")])
    assert results[1].ok
    failed = results[0]
    assert not failed.ok and failed.text is None
    assert "500" in (failed.error or "")
    assert failed.attempts == 3  # one try + max_retries
    assert llm_server.stats.count_for(req("doomed").messages) == 3
    # A failure is not journaled: a re-run tries it again.
    assert client.journal is not None and client.journal.get(failed.key) is None


def test_timeouts_are_bounded(llm_server, llm_client):
    llm_server.set_script(Script(rules=[Rule(pattern=".", replies=["!hang"])], hang_s=30))
    result = llm_client(timeout_s=0.2, max_retries=1).complete_many([req("stuck")])[0]
    assert not result.ok and "timed out" in (result.error or "")
    assert result.attempts == 2


class ScriptedProvider:
    """An in-process provider raising the errors it is given, then answering."""

    def __init__(self, errors: list[Exception]):
        self.spec = ProviderSpec(kind="openai-compatible", base_url="http://unused")
        self.errors = list(errors)
        self.calls = 0

    name = "openai-compatible"
    model = "scripted"

    async def check(self) -> None:
        return None

    async def complete(self, request: ChatRequest) -> Completion:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return Completion(text="done", usage=Usage(prompt_tokens=1, completion_tokens=1))

    async def aclose(self) -> None:
        return None


def test_permanent_errors_are_not_retried():
    provider = ScriptedProvider([PermanentError("context too long")])
    client = LLMClient(provider.spec, provider=provider, retry=FAST_RETRY)
    result = client.complete_many([req("x")])[0]
    assert result.error == "context too long" and provider.calls == 1


def test_an_adapter_bug_becomes_a_recorded_error_not_an_exception():
    provider = ScriptedProvider([KeyError("choices"), TransientError("blip")])
    client = LLMClient(provider.spec, provider=provider, retry=FAST_RETRY)
    first, second = client.complete_many([req("a"), req("b")])
    errors = [r.error for r in (first, second) if not r.ok]
    assert len(errors) == 1 and "KeyError" in errors[0]


def test_missing_openai_key_is_a_config_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    client = make_client("openai", model="gpt-4o-mini", use_journal=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        client.check()
    with pytest.raises(ConfigError):
        client.complete_many([req("x")])


def test_unknown_model_is_a_config_error_before_any_chat_request(llm_server, llm_client):
    client = llm_client(model="no-such-model")
    with pytest.raises(ConfigError, match="no-such-model"):
        client.complete_many([req("x")])
    assert llm_server.stats.chat_requests == 0
    assert llm_server.stats.model_requests >= 1


def test_openai_kind_with_key_checks_the_model_at_the_server(llm_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    ok = make_client("openai", model="test-model", base_url=llm_server.base_url)
    ok.check()
    bad = make_client("openai", model="gpt-nope", base_url=llm_server.base_url)
    with pytest.raises(ConfigError, match="gpt-nope"):
        bad.check()
    assert llm_server.stats.chat_requests == 0


@pytest.mark.parametrize("url", ["localhost:8000", "ftp://example.com/v1", "http://"])
def test_malformed_url_is_a_config_error(url):
    with pytest.raises(ConfigError, match="base_url"):
        make_client("openai-compatible", model="m", base_url=url).check()


def test_unreachable_url_is_a_config_error():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = make_client("openai-compatible", model="m", base_url=f"http://127.0.0.1:{port}/v1")
    with pytest.raises(ConfigError, match="cannot reach"):
        client.check()


def test_unknown_provider_and_missing_base_url_are_config_errors():
    with pytest.raises(ConfigError, match="unknown LLM provider 'gemini'"):
        make_client("gemini")
    with pytest.raises(ConfigError, match="needs a base_url"):
        make_client("openai-compatible", model="m").check()
    with pytest.raises(ConfigError, match="bad LLM settings"):
        make_client("openai-compatible", model="m", base_url="http://x", max_concurrency=0)


def test_empty_model_takes_the_servers_first_model(llm_server):
    client = make_client("openai-compatible", base_url=llm_server.base_url)
    client.check()
    assert client.model == "test-model"


def test_on_result_exceptions_propagate_to_the_caller(llm_server, llm_client):
    def boom(i: int, result: ChatResult) -> None:
        raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        llm_client().complete_many([req("a"), req("b")], on_result=boom)


def test_base_url_without_the_api_path_is_a_config_error(llm_server):
    root = llm_server.base_url.removesuffix("/v1")
    with pytest.raises(ConfigError, match="ends in /v1"):
        make_client("openai-compatible", model="test-model", base_url=root).check()
    assert llm_server.stats.chat_requests == 0


def test_a_server_that_dies_mid_run_stops_the_caller_not_its_rows():
    """Refused connections are not the request's fault: they use no retry budget (no row
    is turned into an error by an outage); past max_outage_s the caller gets one
    EndpointDown naming the server (see tests/faults/test_faults_server_death.py)."""
    from tasks.llm.base import EndpointDown
    from winnow.testing.llm_server import LLMTestServer

    server = LLMTestServer(Script()).start()
    client = make_client(
        "openai-compatible",
        model="test-model",
        base_url=server.base_url,
        retry=FAST_RETRY,
        max_retries=2,
        timeout_s=2,
        max_outage_s=1.5,
    )
    assert client.complete_many([req("before")])[0].ok
    server.stop()
    with pytest.raises(EndpointDown, match=server.base_url):
        client.complete_many([req(f"after {i}") for i in range(5)])
    assert client.journal is not None and len(client.journal) == 1
    client.close()


def test_callbacks_run_in_the_callers_thread_and_clients_share_a_limiter(llm_server, llm_client):
    first, second = llm_client(), llm_client()
    threads: set[str] = set()
    first.complete_many(
        [req("t1"), req("t2")], on_result=lambda i, r: threads.add(threading.current_thread().name)
    )
    second.complete_many([req("t3")])
    assert threads == {threading.current_thread().name}
    assert first.limiter is second.limiter  # one per (provider, base_url, model)
