"""Failures a person can act on, and what a run says on its Prefect page.

- an unreachable server is named for its real cause: refused, or silent past the timeout;
- a run whose checks fail before any stage is in the catalog as failed, with its reason;
- below ``min_kept`` a run publishes what it has, then fails (Prefect state Failed);
- Winnow's own warnings ("no price for model ...") are among the flow run's logs.
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from pathlib import Path

import pytest

from tasks.llm.base import ConfigError, ProviderSpec
from tasks.llm.concurrency import run_sync
from tasks.llm.openai_provider import OpenAIProvider
from tests.scripted_rag import documents, script
from winnow.testing.llm_server import LLMTestServer, Rule


def _check(base_url: str, timeout_s: float = 5.0) -> str:
    spec = ProviderSpec(kind="openai-compatible", model="m", base_url=base_url, timeout_s=timeout_s)
    with pytest.raises(ConfigError) as caught:
        run_sync(OpenAIProvider(spec).check())
    return str(caught.value)


def test_a_refused_connection_is_called_refused() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    message = _check(f"http://127.0.0.1:{port}/v1")
    assert "connection refused" in message and "timed out" not in message.lower()


def test_a_silent_server_is_called_silent() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections (the kernel does), never answers
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    try:
        message = _check(f"http://127.0.0.1:{listener.getsockname()[1]}/v1", timeout_s=1.0)
    finally:
        for conn in accepted:
            conn.close()
        listener.close()
    assert "no answer within 1 s" in message and "refused" not in message


def _params(tmp_path: Path, base_url: str, model: str = "test-model", **fields):
    from tasks.recipes.rag_qa.recipe import RAGQAParams

    return RAGQAParams(
        out=str(tmp_path / "out"),
        provider="openai-compatible",
        model=model,
        base_url=base_url,
        documents=str(documents(tmp_path / "docs")),
        questions_per_passage=4,
        judges=1,
        **fields,
    )


def _only_run() -> dict:
    from tasks.store.catalog import Catalog

    runs = Catalog().runs()
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.slow
def test_a_failed_check_is_recorded_as_a_failed_run(tmp_path, prefect_harness) -> None:
    from flows.rag_qa import rag_qa

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    state = rag_qa(_params(tmp_path, f"http://127.0.0.1:{port}/v1"), return_state=True)
    assert state.is_failed()
    run = _only_run()
    assert run["status"] == "failed"
    assert run["error"].startswith("ConfigError: cannot reach")
    assert "connection refused" in run["error"]
    # on the run's page: the message, without a traceback
    logs = _run_logs(state.state_details.flow_run_id)
    errors = [log.message for log in logs if log.level >= 40]
    assert errors and all("Traceback" not in m for m in errors), errors
    assert any("connection refused" in m for m in errors), errors


def _run_logs(flow_run_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # the log worker sends in batches

    async def read() -> list:
        async with get_client() as client:
            flt = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            return await client.read_logs(log_filter=flt)

    return run_sync(read())


def _rejecting_script(model: str):
    """The scripted RAG run, with judges that support no answer: nothing is kept."""
    base = script(model=model)
    no = json.dumps({"reasoning": "Not in the passage.", "supported": "no"})
    rules = [Rule(pattern=r"You check answers for hallucinations", replies=[no]), *base.rules[1:]]
    return base.model_copy(update={"rules": rules})


@pytest.mark.slow
def test_below_min_kept_the_run_publishes_then_fails(tmp_path, prefect_harness) -> None:
    from flows.rag_qa import rag_qa

    with LLMTestServer(_rejecting_script("test-model")) as server:
        state = rag_qa(_params(tmp_path, server.base_url), return_state=True)
    assert state.is_failed()
    assert "fewer than min_kept=1" in state.message
    out = tmp_path / "out"
    funnel = json.loads((out / "funnel.json").read_text())  # published for inspection
    assert funnel["kept"] == 0
    assert (out / "dataset.jsonl").read_text() == ""
    assert len((out / "rejected.jsonl").read_text().splitlines()) == 4
    run = _only_run()
    assert run["status"] == "failed" and "TooFewKept: kept 0 example(s)" in run["error"]


@pytest.mark.slow
def test_min_kept_zero_lets_an_empty_run_succeed(tmp_path, prefect_harness) -> None:
    from flows.rag_qa import rag_qa

    with LLMTestServer(_rejecting_script("test-model")) as server:
        summary = rag_qa(_params(tmp_path, server.base_url, min_kept=0))
    assert summary["kept"] == 0 and _only_run()["status"] == "completed"


@pytest.mark.slow
def test_winnow_warnings_reach_the_flow_run_logs(tmp_path, prefect_harness) -> None:
    from flows.rag_qa import rag_qa

    model = f"unpriced-{uuid.uuid4().hex[:8]}"  # no price: the client warns once per model
    with LLMTestServer(script(model=model)) as server:
        state = rag_qa(_params(tmp_path, server.base_url, model=model), return_state=True)
    assert state.is_completed()

    found = [
        log
        for log in _run_logs(state.state_details.flow_run_id)
        if "no price for model" in log.message
    ]
    assert found, "the price warning is not on the run page"
    assert found[0].name == "tasks.llm.prices" and found[0].level == 30
    assert model in found[0].message


def test_a_stage_error_is_one_line_naming_stage_shard_and_exception(caplog) -> None:
    """A pydantic error in a stage's own code (a field with an alias, say) is a bug in
    the recipe, not a bad parameter: it says so in one line."""
    from pydantic import BaseModel, ValidationError

    from tasks.pipeline.runner import StageFailed, run_shard, write_input_shards
    from tasks.pipeline.stage import RunInfo, Stage

    class Strict(BaseModel):
        n: int

    def parse(rows, config, ctx):
        return [Strict(n=row["text"]) for row in rows]

    shards = write_input_shards([{"id": "a", "text": "not a number"}], 5, "t")
    with pytest.raises(StageFailed) as caught:
        run_shard(Stage("parse", parse), shards[0], None, RunInfo(run_id="r", recipe="t"))
    line = str(caught.value)
    assert "\n" not in line
    assert line.startswith("stage 'parse' failed on shard ")
    assert "(1 rows): ValidationError: 1 validation error for Strict" in line
    assert isinstance(caught.value.__cause__, ValidationError)
    assert line in caplog.text  # logged before Prefect's traceback


def test_a_structured_answer_keeps_the_keys_the_model_wrote() -> None:
    from pydantic import BaseModel, ConfigDict, Field

    from tasks.llm.structured import validate

    class Query(BaseModel):
        model_config = ConfigDict(populate_by_name=True)
        sql: str = Field(alias="query")

    value, error = validate('{"query": "SELECT 1"}', Query)
    assert error is None and value == {"query": "SELECT 1"}
    assert Query(**value).sql == "SELECT 1"  # what a parse does with answer.value


@pytest.mark.slow
def test_the_command_exits_4_below_min_kept_after_publishing(
    project_dir, prefect_api_url, monkeypatch
) -> None:
    """`winnow run rag-qa --scripted` keeps 2 (its scenario); asked for 100 it publishes
    them, says why it fails in one line and exits with status 4."""
    from typer.testing import CliRunner

    from winnow.cli import app

    monkeypatch.setenv("PREFECT_API_URL", prefect_api_url)
    result = CliRunner().invoke(app, ["run", "rag-qa", "--scripted", "--set", "min_kept=100"])
    text = " ".join(result.output.split())
    assert result.exit_code == 4, (result.output, result.exception)
    assert "error: kept 2 example(s), fewer than min_kept=100 (published to" in text
    assert "Traceback" not in result.output
    out = next((project_dir / ".winnow" / "scripted").glob("rag-qa-*")) / "out"
    assert len((out / "dataset.jsonl").read_text().splitlines()) == 2
    assert _only_run()["status"] == "failed"
