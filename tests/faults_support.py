"""Shared by the fault tests: run `winnow run` as a process, map the request journal to
the test server's request keys, and check what a reader would see at the output path."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tasks.llm.base import ChatRequest, ProviderSpec
from tasks.llm.openai_provider import OpenAIProvider
from tests.recipes.test_code_sft_flow import TOPICS
from winnow.testing.llm_server import Stats, body_key

ROOT = Path(__file__).resolve().parent.parent


def winnow_env(project: Path, prefect_api_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "WINNOW_KILL_AT"}
    env.update(WINNOW_PROJECT_DIR=str(project), PREFECT_API_URL=prefect_api_url, **extra)
    return env


def start_run(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """`winnow run ARGS` in its own session (so a kill takes its children with it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "winnow.cli", "run", *args],
        env=env,
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the run and anything it started, and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(30)


def finish(proc: subprocess.Popen[str], timeout: float = 600) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        raise
    kill_group(proc)  # strays, if any
    return proc.returncode, out, err


def code_sft_args(tmp: Path, url: str, out: Path) -> list[str]:
    """`winnow run` arguments of a small code-sft run against the script of
    ``tests/recipes/test_code_sft_flow.py`` (topics file written under ``tmp``)."""
    topics = tmp / "topics.txt"
    topics.write_text("\n".join(TOPICS) + "\n")
    sets = {
        "topics_file": str(topics),
        "n_problems": "7",
        "difficulties": '["easy"]',
        "n_solutions": "2",
        "max_revision_rounds": "1",
        "sandbox": "bwrap",
        "shard_size": "3",
        "concurrency": "2",
    }
    args = ["code-sft", "--provider", "openai-compatible", "--base-url", url]
    args += ["--model", "test-model", "--out", str(out)]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    return args


def settle(stats: Stats, quiet_s: float = 0.3, timeout: float = 30) -> None:
    """Wait until the test server has finished every request it received and none has
    arrived for ``quiet_s``: a killed client's requests still being answered belong to
    the attempt that sent them, not to the next one."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        snap = stats.snapshot()
        if snap["chat_requests"] != last or snap["pending"]:
            last, since = snap["chat_requests"], time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.02)
    raise AssertionError(f"the test server never went quiet: {stats.snapshot()['pending']} pending")


def answered(stats: Stats) -> Counter[str]:
    """Successful answers the test server sent, by request key."""
    return Counter(stats.snapshot()["answered"])


def received(stats: Stats) -> Counter[str]:
    """Chat requests the test server received, by request key."""
    return Counter(stats.snapshot()["by_request"])


def journal_wire_keys(project: Path, base_url: str) -> set[str]:
    """The server-side key (``body_key``) of every request in the project's journal:
    each entry's messages, parameters and sample rebuilt into the body the OpenAI adapter
    sends for them."""
    path = project / ".winnow" / "journal.sqlite"
    if not path.exists():
        return set()
    try:
        with sqlite3.connect(path) as db:
            rows = db.execute("SELECT provider, model, request FROM requests").fetchall()
    except sqlite3.OperationalError:  # being created by the run right now
        return set()
    keys = set()
    adapters: dict[tuple[str, str], OpenAIProvider] = {}
    for provider, model, request in rows:
        adapter = adapters.setdefault(
            (provider, model),
            OpenAIProvider(ProviderSpec(kind=provider, model=model, base_url=base_url)),
        )
        keys.add(body_key(adapter._arguments(ChatRequest.model_validate(json.loads(request)))))
    return keys


def assert_complete_or_absent(out: Path) -> None:
    """What a reader sees at ``out``: nothing, or a whole dataset whose manifest matches
    its files (same names, sizes and sha256) and whose JSON Lines have their row count."""
    if not out.exists():
        return
    manifest = json.loads((out / "manifest.json").read_text())
    present = {p.name for p in out.iterdir()} - {"manifest.json"}
    assert present == set(manifest["files"]), (present, manifest["files"])
    for name, info in manifest["files"].items():
        data = (out / name).read_bytes()
        assert len(data) == info["bytes"], name
        assert hashlib.sha256(data).hexdigest() == info["sha256"], name
        if name.endswith(".jsonl"):
            assert len(data.decode().splitlines()) == info["rows"], name


_VOLATILE = {"run_id", "created_at", "published_at"}


def _stable(value: Any) -> Any:
    """A value without the fields that name a run or a time."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def dataset_view(out: Path) -> dict[str, Any]:
    """A published dataset for comparison: kept rows and rejections by id (order is not
    a promise), with run ids and timestamps left out."""
    view: dict[str, Any] = {}
    for name in ("dataset.jsonl", "rejected.jsonl"):
        rows = [_stable(json.loads(line)) for line in (out / name).read_text().splitlines()]
        view[name] = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))
    funnel = json.loads((out / "funnel.json").read_text())
    view["funnel"] = [
        (s["stage"], s["n_in"], s["n_out"], s["n_rejected"]) for s in funnel["stages"]
    ]
    return view
