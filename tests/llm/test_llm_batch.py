"""Batch APIs (OpenAI Batch API, Anthropic Message Batches) through the official SDKs
against the local batch doubles: answers, journal, discount, partial failures, expiry,
invalid requests, and a process killed while its batch is in progress."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tasks.llm.base import ChatRequest, EndpointDown, GenerationParams, Message, ProviderSpec
from tasks.llm.batch.api import BatchSettings
from tasks.llm.batch.jobs import BatchTimeout, batches_dir, complete_many_batched
from tasks.llm.client import LLMClient
from tasks.llm.journal import Journal
from tasks.llm.prices import ModelPrice, PriceTable
from winnow.testing.batch_server import AnthropicBatchServer, BatchBehaviour, OpenAIBatchServer
from winnow.testing.llm_server import Rule, Script

FAST = BatchSettings(poll_initial_s=0.01, poll_max_s=0.05, max_wait_s=5.0)
SCRIPT = Script(
    models=["test-model", "claude-haiku-4-5"],
    rules=[Rule(pattern=r"say (\w+)", replies=["ok"])],
)


def req(text: str, sample: int = 0) -> ChatRequest:
    return ChatRequest(
        messages=[Message(role="system", content="be brief"), Message(role="user", content=text)],
        params=GenerationParams(temperature=0.0, max_tokens=20),
        sample=sample,
    )


@pytest.fixture(params=["openai", "anthropic"])
def api(request, monkeypatch):
    """(server, spec) for each batch API."""
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    behaviour = BatchBehaviour()
    if request.param == "openai":
        server = OpenAIBatchServer(SCRIPT, behaviour).start()
        spec = ProviderSpec(kind="openai", model="test-model", base_url=server.base_url)
    else:
        server = AnthropicBatchServer(SCRIPT, behaviour).start()
        spec = ProviderSpec(kind="anthropic", model="claude-haiku-4-5", base_url=server.base_url)
    yield server, spec
    server.stop()


def client_with_prices(spec: ProviderSpec) -> LLMClient:
    prices = PriceTable({spec.model: ModelPrice(input=1e6, output=1e6)})
    return LLMClient(spec, journal=Journal(), prices=prices)


def test_answers_in_order_journaled_at_the_discount(api) -> None:
    server, spec = api
    client = client_with_prices(spec)
    requests = [req("say one"), req("say two"), req("say one")]  # a duplicate
    results = complete_many_batched(spec, requests, label="t", settings=FAST, client=client)
    assert [r.text for r in results] == ["ok", "ok", "ok"]
    assert all(r.ok and not r.cached for r in results)
    assert server.batch.batch_stats.batches_created == 1
    # the duplicate is batched once
    assert sum(server.batch.batch_stats.batched.values()) == 2
    # priced at half the live price (1 USD per token live)
    usage = results[0].usage
    assert results[0].cost_usd == pytest.approx(
        0.5 * (usage.prompt_tokens + usage.completion_tokens)
    )
    entry = client.journal.get(results[0].key)
    assert entry is not None and entry.batch
    # a second call is answered by the journal: no new batch
    again = complete_many_batched(spec, requests, label="t", settings=FAST, client=client)
    assert all(r.cached for r in again)
    assert server.batch.batch_stats.batches_created == 1
    # the state file names the batch it submitted
    states = [json.loads(p.read_text()) for p in batches_dir().glob("*.json")]
    assert len(states) == 1 and states[0]["ended"] and states[0]["batch_id"]


def test_journaled_requests_are_left_out_of_the_batch_file(api) -> None:
    server, spec = api
    client = client_with_prices(spec)
    complete_many_batched(spec, [req("say one")], label="t", settings=FAST, client=client)
    complete_many_batched(
        spec, [req("say one"), req("say two")], label="t", settings=FAST, client=client
    )
    assert server.batch.batch_stats.batches_created == 2
    files = sorted(batches_dir().glob("*.requests.jsonl"), key=os.path.getmtime)
    assert [len(f.read_text().splitlines()) for f in files] == [1, 1]
    assert "say two" in files[-1].read_text()


def test_only_failed_and_expired_requests_are_resubmitted(api) -> None:
    server, spec = api
    server.batch.behaviour = BatchBehaviour(fail_pattern="say two", expire_pattern="say three")
    client = client_with_prices(spec)
    requests = [req("say one"), req("say two"), req("say three")]
    results = complete_many_batched(spec, requests, label="t", settings=FAST, client=client)
    assert [r.text for r in results] == ["ok", "ok", "ok"]
    stats = server.batch.batch_stats
    assert stats.batches_created == 2
    counts = {r.messages[-1].content: stats.batched[_hash(r)] for r in requests}
    assert counts == {"say one": 1, "say two": 2, "say three": 2}


def test_invalid_requests_and_exhausted_rounds_become_errors(api) -> None:
    server, spec = api
    server.batch.behaviour = BatchBehaviour(
        invalid_pattern="say bad", expire_pattern="say late", expire_times=99
    )
    client = client_with_prices(spec)
    settings = FAST.model_copy(update={"max_rounds": 2})
    requests = [req("say one"), req("say bad"), req("say late")]
    results = complete_many_batched(spec, requests, label="t", settings=settings, client=client)
    assert results[0].ok
    assert not results[1].ok and "invalid" in results[1].error
    assert not results[2].ok and "expired" in results[2].error and "2 batch" in results[2].error
    stats = server.batch.batch_stats
    assert stats.batched[_hash(requests[1])] == 1  # not resubmitted
    assert stats.batched[_hash(requests[2])] == 2


def test_a_batch_still_running_times_out_and_is_resumed_not_resubmitted(api) -> None:
    server, spec = api
    server.batch.behaviour = BatchBehaviour(hold=True)
    client = client_with_prices(spec)
    settings = FAST.model_copy(update={"max_wait_s": 0.05})
    with pytest.raises(BatchTimeout):
        complete_many_batched(spec, [req("say one")], label="t", settings=settings, client=client)
    server.batch.release()
    results = complete_many_batched(spec, [req("say one")], label="t", settings=FAST, client=client)
    assert results[0].text == "ok"
    assert server.batch.batch_stats.batches_created == 1


class _Outage(threading.Thread):
    """Once the batch exists, stop the batch API, keep it down ``down_s`` seconds, and
    start it again on the same port with the same batches (a restarted server)."""

    def __init__(self, server, down_s: float, release: bool = True) -> None:
        super().__init__(daemon=True)
        self.server, self.down_s, self.release = server, down_s, release
        self.back = threading.Event()
        self.start()

    def run(self) -> None:
        server = self.server
        deadline = time.monotonic() + 30
        while server.batch.batch_stats.batches_created == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.stop()
        time.sleep(self.down_s)
        server._port = server.port
        server.start()
        self.back.set()
        if self.release:
            server.batch.release()


def test_a_batch_api_restarted_mid_wait_is_waited_for(api) -> None:
    server, spec = api
    server.batch.behaviour = BatchBehaviour(hold=True)
    spec = spec.model_copy(update={"max_outage_s": 30})
    client = client_with_prices(spec)
    settings = FAST.model_copy(update={"max_wait_s": 60})
    outage = _Outage(server, down_s=2.0)
    results = complete_many_batched(
        spec, [req("say one")], label="t", settings=settings, client=client
    )
    outage.join(30)
    assert results[0].text == "ok"
    assert server.batch.batch_stats.batches_created == 1


def test_a_batch_api_down_too_long_stops_clearly_and_resumes_later(api) -> None:
    server, spec = api
    server.batch.behaviour = BatchBehaviour(hold=True)
    spec = spec.model_copy(update={"max_outage_s": 1.0})
    client = client_with_prices(spec)
    settings = FAST.model_copy(update={"max_wait_s": 60})
    outage = _Outage(server, down_s=10.0, release=False)
    with pytest.raises(EndpointDown, match="cannot reach the batch API .* run the same command"):
        complete_many_batched(spec, [req("say one")], label="t", settings=settings, client=client)
    assert not outage.back.is_set()  # stopped at the bound, not when the server came back
    outage.join(30)
    server.batch.release()
    results = complete_many_batched(spec, [req("say one")], label="t", settings=FAST, client=client)
    assert results[0].text == "ok"
    assert server.batch.batch_stats.batches_created == 1  # the saved batch, not a new one


def _hash(request: ChatRequest) -> str:
    from winnow.testing.llm_server import message_hash

    return message_hash([m.model_dump() for m in request.messages])


CHILD = """
import sys
from tasks.llm.base import ChatRequest, GenerationParams, Message, ProviderSpec
from tasks.llm.batch.api import BatchSettings
from tasks.llm.batch.jobs import complete_many_batched
spec = ProviderSpec.model_validate_json(sys.argv[1])
request = ChatRequest(
    messages=[Message(role="system", content="be brief"), Message(role="user", content="say one")],
    params=GenerationParams(temperature=0.0, max_tokens=20),
)
settings = BatchSettings(poll_initial_s=0.05, poll_max_s=0.05, max_wait_s=600)
print(complete_many_batched(spec, [request], label="t", settings=settings)[0].text, flush=True)
"""


def test_a_killed_process_resumes_its_submitted_batch(api, project_dir: Path) -> None:
    """The waiting process is killed (SIGKILL) while the batch is in progress; the next
    run polls the batch id it persisted and submits nothing."""
    server, spec = api
    server.batch.behaviour = BatchBehaviour(hold=True)
    env = dict(os.environ, WINNOW_PROJECT_DIR=str(project_dir))
    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, spec.model_dump_json()], env=env, cwd=root
    )
    try:
        deadline = time.monotonic() + 60
        while not list(batches_dir().glob("*.json")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.batch.batch_stats.batches_created == 1
        polls = server.batch.batch_stats.status_polls
        deadline = time.monotonic() + 30
        while server.batch.batch_stats.status_polls == polls and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        child.kill()
        child.wait()
    assert child.returncode != 0  # killed mid-wait
    server.batch.release()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, spec.model_dump_json()],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert server.batch.batch_stats.batches_created == 1


def test_batched_json_answers_that_do_not_fit_are_re_asked_in_a_second_batch(
    monkeypatch, project_dir: Path
) -> None:
    """Live and batched structured answers follow one rule: a bad one is asked again."""
    from pydantic import BaseModel as Model

    from tasks.llm.batch.jobs import complete_json_batched

    class Answer(Model):
        value: int

    script = Script(
        rules=[
            # the re-ask repeats the first answer and the validation error: answer it well
            Rule(pattern=r"assistant: not json.*could not be used", replies=['{"value": 2}']),
            Rule(pattern=r"say one", replies=['{"value": 1}']),
            Rule(pattern=r"say two", replies=["not json"]),
            Rule(pattern=r"say three", replies=['{"value": "three"}'], then="last"),
        ]
    )
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    server = OpenAIBatchServer(script, BatchBehaviour()).start()
    try:
        spec = ProviderSpec(kind="openai", model="test-model", base_url=server.base_url)
        requests = [req("say one"), req("say two"), req("say three")]
        out = complete_json_batched(spec, requests, Answer, settings=FAST, label="q", max_reasks=2)
        assert [r.value for r in out] == [{"value": 1}, {"value": 2}, None]
        assert [r.attempts for r in out] == [1, 2, 3]  # three never fits: 2 re-asks, then no
        assert "value" in (out[2].error or "")
        # one batch for the first answers, then one per re-ask round with the failures only
        stats = server.batch.batch_stats
        assert stats.batches_created == 3
        assert sum(stats.batched.values()) == 3 + 2 + 1
    finally:
        server.stop()


def test_a_batch_created_but_not_saved_is_found_not_paid_again(
    monkeypatch, project_dir: Path
) -> None:
    """The process died between creating the batch and saving its id: OpenAI batches
    carry the job in their metadata, so the restart finds and adopts the batch."""
    from tasks.llm.batch.jobs import adapter_for, job_key
    from tasks.llm.clients import client_for

    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    server = OpenAIBatchServer(SCRIPT, BatchBehaviour()).start()
    try:
        spec = ProviderSpec(kind="openai", model="test-model", base_url=server.base_url)
        client = client_for(spec)
        client.check()
        requests = [req("say one"), req("say two")]
        pending = {client.key(r): r for r in requests}
        # what a killed run left behind: a batch on the server, no state file
        job = job_key("t", client.name, client.model, list(pending))
        orphan = adapter_for(client).submit(list(pending.items()), job, batches_dir())
        assert not (batches_dir() / f"{job}.json").exists()
        results = complete_many_batched(spec, requests, label="t", settings=FAST)
        assert [r.text for r in results] == ["ok", "ok"]
        assert server.batch.batch_stats.batches_created == 1  # the orphan, adopted
        assert json.loads((batches_dir() / f"{job}.json").read_text())["batch_id"] == orphan
    finally:
        server.stop()
