"""`winnow generate` end to end against the test LLM server (a named test double): every
row comes out, in order, with its completion or its error; a re-run pays nothing; a run
killed mid-way resumes without sending any journaled request again."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from winnow.cli import app
from winnow.testing.llm_server import Reply, Rule, Script

ROOT = Path(__file__).resolve().parents[2]


def write_rows(path: Path, n: int) -> Path:
    path.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "instruction": f"question {i}"}) + "\n" for i in range(n)
        )
    )
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_bad_inputs_fail_before_any_request(tmp_path: Path, llm_server) -> None:
    good = write_rows(tmp_path / "in.jsonl", 2)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "ok"}\nnot json\n')
    lacking = tmp_path / "lacking.jsonl"
    lacking.write_text('{"question": "no instruction field"}\n')
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = tmp_path / "lacking.parquet"  # any table is read and checked the same way
    pq.write_table(pa.Table.from_pylist([{"instruction": "ok"}, {"instruction": None}]), parquet)
    common = ["--provider", "openai-compatible", "--base-url", llm_server.base_url]
    cases = [
        (["--input", str(bad), "--model", "test-model"], "bad.jsonl:2: not valid JSON"),
        (["--input", str(lacking), "--model", "test-model"], "lacks field(s) ['instruction']"),
        (["--input", str(parquet), "--model", "test-model"], "row 2 lacks field(s)"),
        (["--input", str(tmp_path / "nope.jsonl"), "--model", "test-model"], "not found"),
        (["--input", str(good), "--model", "no-such-model"], "no-such-model"),
        (["--input", str(good), "--model", "test-model", "--prompt", "nope"], "no prompt template"),
    ]
    for extra, message in cases:
        code, output = cli("generate", "--out", str(tmp_path / "o.jsonl"), *common, *extra)
        assert code == 2, output
        assert message in output
    code, output = cli(
        "generate", "--input", str(good), "--out", str(tmp_path / "o.jsonl"), "--provider", "bogus"
    )
    assert code == 2 and "bogus" in output
    assert llm_server.stats.chat_requests == 0
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.slow
def test_generate_keeps_order_errors_and_reruns_free(
    tmp_path: Path, llm_server, prefect_harness
) -> None:
    from flows.generate import generate as generate_flow
    from tasks.recipes.generate.recipe import GenerateParams

    llm_server.set_script(
        Script(
            rules=[
                Rule(pattern=r"question 3\b", replies=[Reply(fault="500")]),
                Rule(pattern=r"question (\d+)", replies=["answer"]),
            ]
        )
    )
    src = write_rows(tmp_path / "in.jsonl", 10)
    out = tmp_path / "out.jsonl"
    params = GenerateParams(
        input=str(src),
        out=str(out),
        provider="openai-compatible",
        model="test-model",
        base_url=llm_server.base_url,
        shard_size=3,
        max_retries=1,
    )
    summary = generate_flow(params)
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(10)]
    assert [r.get("completion") for r in rows if r["id"] != "q3"] == ["answer"] * 9
    failed = next(r for r in rows if r["id"] == "q3")
    assert "completion" not in failed and "500" in failed["error"]
    assert all(r["provenance"]["template"] == "instruction" for r in rows)
    assert (summary["completed"], summary["failed"]) == (9, 1)
    code, shown = cli("show", summary["run_id"], "--json")
    assert code == 0, shown
    shown = json.loads(shown)
    assert shown["funnel"][0] | {"n_in": 10, "n_out": 9, "n_rejected": 1} == shown["funnel"][0]
    assert shown["costs"]["calls"] == 10 and shown["run"]["status"] == "completed"
    # every attempt is counted: the failing row was sent twice (max_retries=1)
    assert shown["costs"]["sends"] == llm_server.stats.chat_requests == 11
    assert (shown["run"]["provider"], shown["run"]["model"]) == ("openai-compatible", "test-model")
    assert "500" in shown["rejections"][0]["reason"]
    code, listed = cli("runs")
    assert code == 0 and summary["run_id"][:10] in listed

    # The re-run sends only the request that failed (its shard was incomplete).
    before = llm_server.stats.chat_requests
    llm_server.set_script(Script(rules=[Rule(pattern=r"question", replies=["answer"])]))
    again = generate_flow(params)
    assert llm_server.stats.chat_requests - before == 1
    assert (again["completed"], again["failed"]) == (10, 0)
    # And a third run makes no request at all.
    generate_flow(params)
    assert llm_server.stats.chat_requests - before == 1


def start_server(latency_ms: int, concurrency: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "winnow.testing",
            "--port",
            "0",
            "--latency-ms",
            str(latency_ms),
            "--concurrency",
            str(concurrency),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    url = proc.stdout.readline().strip()  # type: ignore[union-attr]
    return proc, url


def stats(url: str) -> dict:
    return httpx.get(url.removesuffix("/v1") + "/_stats").json()


def settled_stats(url: str, quiet_s: float = 0.3, timeout: float = 30) -> dict:
    """The server's counts once it has finished every request it received and none has
    arrived for ``quiet_s``: a request a killed client sent just before dying may still
    be on its way, and belongs to that client's run."""
    deadline = time.monotonic() + timeout
    last, since = stats(url), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = stats(url)
        if now["chat_requests"] != last["chat_requests"] or now["pending"]:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return now
    raise AssertionError(f"the test server never went quiet: {last}")


@pytest.mark.slow
def test_killed_generate_resumes_without_paying_twice(tmp_path: Path, project_dir: Path) -> None:
    server, url = start_server(latency_ms=150, concurrency=4)
    try:
        n = 60
        src = write_rows(tmp_path / "in.jsonl", n)
        out = tmp_path / "out.jsonl"
        cmd = [
            sys.executable,
            "-m",
            "winnow.cli",
            "generate",
            "--input",
            str(src),
            "--out",
            str(out),
            "--provider",
            "openai-compatible",
            "--model",
            "test-model",
            "--base-url",
            url,
            "--concurrency",
            "4",
            "--shard-size",
            "10",
        ]
        env = {
            **os.environ,
            "WINNOW_PROJECT_DIR": str(project_dir),
            "PREFECT_HOME": str(tmp_path / "prefect"),
        }
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=ROOT,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 240
        while stats(url)["completed"] < 20:
            assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "generate never got going"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not out.exists(), "a partial output must never be visible"
        with sqlite3.connect(project_dir / ".winnow" / "journal.sqlite") as db:
            journaled = db.execute("SELECT count(*) FROM requests").fetchone()[0]
        assert 0 < journaled < n
        sent_before = settled_stats(url)["chat_requests"]

        result = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        sent_after = stats(url)["chat_requests"]
        # Exactly the requests the journal did not have were sent again.
        assert sent_after - sent_before == n - journaled
        rows = read_jsonl(out)
        assert [r["id"] for r in rows] == [f"q{i}" for i in range(n)]
        assert all(r.get("completion") for r in rows)
    finally:
        server.terminate()
        server.wait(10)
