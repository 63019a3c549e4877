"""The LLM server dies mid-run and comes back.

The client waits for a server that refuses connections up to ``max_outage_s`` (the
recipe parameter ``llm_max_outage_s``), using no retry budget meanwhile; past that, the
run stops with one line naming the endpoint and exit status 3, and running it again
resumes without resending any journaled request. First at the client level (fast), then
`winnow run code-sft` against the test LLM server (a named test double) as a process on
a fixed port, SIGKILLed and restarted.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tasks.llm.base import ChatRequest, EndpointDown, Message
from tests.faults_support import (
    ROOT,
    code_sft_args,
    dataset_view,
    finish,
    journal_wire_keys,
    start_run,
    winnow_env,
)
from tests.recipes.test_code_sft_flow import script
from winnow.testing.llm_server import LLMTestServer, Script


def requests(n: int) -> list[ChatRequest]:
    return [ChatRequest(messages=[Message(role="user", content=f"q{i}")]) for i in range(n)]


def test_a_server_back_within_the_bound_is_waited_for(llm_server, llm_client) -> None:
    client = llm_client(max_outage_s=30)
    assert client.complete_many(requests(1))[0].ok
    port = llm_server.port
    llm_server.stop()
    back: list[LLMTestServer] = []
    timer = threading.Timer(1.5, lambda: back.append(LLMTestServer(Script(), port=port).start()))
    timer.start()
    started = time.monotonic()
    try:
        results = client.complete_many(requests(4)[1:])
        waited = time.monotonic() - started
    finally:
        timer.join()
        for server in back:
            server.stop()
    assert all(r.ok for r in results), [r.error for r in results]
    assert 1.4 < waited < 30
    assert back[0].stats.chat_requests == 3


def test_a_server_down_past_the_bound_stops_with_the_endpoint_named(llm_server, llm_client) -> None:
    client = llm_client(max_outage_s=1.0)
    client.check()
    llm_server.stop()
    started = time.monotonic()
    with pytest.raises(EndpointDown, match=r"cannot reach the LLM server at http://127\.0\.0\.1"):
        client.complete_many(requests(3))
    assert 0.9 < time.monotonic() - started < 15


# --- `winnow run` against a server process that is killed and restarted ----------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`python -m winnow.testing` on a fixed port, killable and restartable."""

    def __init__(self, script_file: Path, port: int) -> None:
        self.script_file, self.port = script_file, port
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "winnow.testing", "--port", str(self.port)]
            + ["--script", str(self.script_file)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == self.url
        return self

    def stats(self) -> dict:
        return httpx.get(f"http://127.0.0.1:{self.port}/_stats", timeout=10).json()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def wait_answers(self, n: int, run: subprocess.Popen[str]) -> None:
        deadline = time.monotonic() + 300
        while self.stats()["completed"] < n:
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "the run never got going"
            time.sleep(0.05)


@pytest.mark.slow
def test_server_killed_mid_run_then_waited_for_or_resumed(
    tmp_path: Path, prefect_api_url: str, code_sft_reference: dict
) -> None:
    expected = code_sft_reference["view"]
    s = script()
    s.latency_ms = 150
    s.concurrency = 2
    script_file = tmp_path / "script.json"
    script_file.write_text(s.model_dump_json())
    server = ServerProcess(script_file, free_port())
    try:
        # A: the server dies mid-run and is back 3 s later: the run waits and completes.
        server.start()
        project_a, out_a = tmp_path / "project-a", tmp_path / "out-a"
        args_a = code_sft_args(tmp_path, server.url, out_a)
        run = start_run(args_a, winnow_env(project_a, prefect_api_url))
        server.wait_answers(6, run)
        server.kill()
        time.sleep(3)
        journaled = journal_wire_keys(project_a, server.url)
        assert journaled and run.poll() is None
        server.start()
        code, _, err = finish(run)
        assert code == 0, err[-3000:]
        assert dataset_view(out_a) == expected
        assert not set(server.stats()["by_request"]) & journaled

        # B: the server dies and stays down past the bound: one clear line, exit 3,
        # nothing published; once it is back, a second run resumes to the same dataset.
        project_b, out_b = tmp_path / "project-b", tmp_path / "out-b"
        args_b = code_sft_args(tmp_path, server.url, out_b) + ["--set", "llm_max_outage_s=3"]
        before = server.stats()["completed"]
        run = start_run(args_b, winnow_env(project_b, prefect_api_url))
        server.wait_answers(before + 6, run)
        server.kill()
        killed_at = time.monotonic()
        code, _, err = finish(run, timeout=300)
        stopped_after = time.monotonic() - killed_at
        assert code == 3, err[-3000:]
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, err[-3000:]
        assert f"cannot reach the LLM server at {server.url}" in errors[0]
        assert "run the same command again" in errors[0]
        assert "Traceback" not in err
        assert stopped_after < 3 + 60, stopped_after  # the bound, plus a run's wind-down
        assert not out_b.exists()

        journaled = journal_wire_keys(project_b, server.url)
        assert journaled
        server.start()
        code, _, err = finish(start_run(args_b, winnow_env(project_b, prefect_api_url)))
        assert code == 0, err[-3000:]
        assert dataset_view(out_b) == expected
        assert not set(server.stats()["by_request"]) & journaled
    finally:
        server.kill()


def test_a_shard_is_not_retried_while_its_endpoint_is_down() -> None:
    """Prefect retries a failed shard, except when the client already waited out the
    outage bound: retrying then would only wait again."""
    from prefect.states import Failed

    from tasks.pipeline.runner import _worth_retrying

    assert not _worth_retrying(None, None, Failed(data=EndpointDown("down")))
    assert _worth_retrying(None, None, Failed(data=ValueError("flaky")))
