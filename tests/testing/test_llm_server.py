"""The test LLM server (a test double) itself: scripting, faults, counts, subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from winnow.testing.llm_server import Faults, LLMTestServer, Reply, Rule, Script

ROOT = Path(__file__).resolve().parents[2]


def chat(base_url: str, content: str, model: str = "test-model", **extra) -> tuple[int, dict]:
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    ).encode()
    request = urllib.request.Request(
        base_url + "/chat/completions", body, {"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_rules_in_order_then_cycle_or_last():
    script = Script(
        rules=[
            Rule(pattern="^user: cyc", replies=["a", "b"]),
            Rule(pattern="^user: last", replies=["x", "y"], then="last"),
        ]
    )
    with LLMTestServer(script) as server:
        texts = [
            chat(server.base_url, "cyc")[1]["choices"][0]["message"]["content"] for _ in range(3)
        ]
        assert texts == ["a", "b", "a"]
        texts = [
            chat(server.base_url, "last")[1]["choices"][0]["message"]["content"] for _ in range(3)
        ]
        assert texts == ["x", "y", "y"]
        status, body = chat(server.base_url, "other")
        assert body["choices"][0]["message"]["content"] == "echo: other"
        assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}
        status, body = chat(server.base_url, "j", response_format={"type": "json_object"})
        assert json.loads(body["choices"][0]["message"]["content"]) == {"echo": "j"}


def test_faults_by_script_and_by_seeded_probability():
    with LLMTestServer(Script(fault_sequence=["429", "ok", "500"], retry_after_s=2)) as server:
        assert chat(server.base_url, "a")[0] == 429
        assert chat(server.base_url, "a")[0] == 200
        assert chat(server.base_url, "a")[0] == 500
        assert server.stats.count_for([{"role": "user", "content": "a"}]) == 3
        assert server.stats.snapshot()["faults"] == {"429": 1, "500": 1}

    def draw(seed: int) -> list[int]:
        with LLMTestServer(Script(faults=Faults(p_500=0.5, seed=seed))) as server:
            return [chat(server.base_url, str(i))[0] for i in range(20)]

    first = draw(1)
    assert first == draw(1) and {200, 500} == set(first)


def test_reply_shorthand():
    assert Reply.parse("!hang").fault == "hang"
    assert Reply.parse("!nope") == Reply(text="!nope")


def test_models_endpoints_and_unknown_model():
    with LLMTestServer(Script(models=["m1", "m2"])) as server:
        with urllib.request.urlopen(server.base_url + "/models") as response:
            assert [m["id"] for m in json.load(response)["data"]] == ["m1", "m2"]
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(server.base_url + "/models/m3")
        assert info.value.code == 404
        assert chat(server.base_url, "x", model="m3")[0] == 404


def test_concurrency_cap_is_enforced(llm_server, llm_client):
    from tasks.llm.base import ChatRequest, Message

    llm_server.set_script(Script(latency_ms=20, concurrency=3))
    client = llm_client(max_concurrency=16)
    client.complete_many(
        [ChatRequest(messages=[Message(role="user", content=f"c{i}")]) for i in range(30)]
    )
    assert llm_server.stats.max_in_flight == 3


def test_runs_as_a_subprocess_and_serves_stats(tmp_path):
    script = tmp_path / "script.json"
    script.write_text(Script(rules=[Rule(pattern="hi", replies=["hello"])]).model_dump_json())
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "winnow.testing",
            "--port",
            "0",
            "--script",
            str(script),
            "--latency-ms",
            "1",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        assert chat(url, "hi")[1]["choices"][0]["message"]["content"] == "hello"
        with urllib.request.urlopen(url.removesuffix("/v1") + "/_stats") as response:
            stats = json.load(response)
        assert stats["chat_requests"] == 1 and len(stats["by_hash"]) == 1
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
