"""The Prefect server `winnow run` and `winnow generate` share: the first command starts
it in the background, later ones find it (no server per run), every run is on it, it is
owned explicitly (`winnow server status|stop`), and PREFECT_API_URL always wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from winnow.testing.llm_server import LLMTestServer, Script

ROOT = Path(__file__).resolve().parents[2]


def env_for(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PREFECT_API"))}
    env.pop("WINNOW_PREFECT_SERVER", None)  # the default: the shared background server
    env.update(PREFECT_HOME=str(tmp / "prefect-home"), WINNOW_PROJECT_DIR=str(tmp / "project"))
    env.update(extra)
    return env


def winnow(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "winnow.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def generate(env: dict[str, str], tmp: Path, base_url: str, name: str) -> None:
    rows = tmp / f"{name}.jsonl"
    rows.write_text("".join(json.dumps({"instruction": f"{name} {i}"}) + "\n" for i in range(3)))
    result = winnow(
        env, "generate", "--input", str(rows), "--out", str(tmp / f"{name}.out.jsonl"),
        "--provider", "openai-compatible", "--model", "test-model", "--base-url", base_url,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]


def flow_runs(api_url: str) -> list[dict]:
    response = httpx.post(f"{api_url}/flow_runs/filter", json={"limit": 50}, timeout=10)
    response.raise_for_status()
    return response.json()


def count_runs(api_url: str) -> int:
    response = httpx.post(f"{api_url}/flow_runs/count", json={}, timeout=10)
    response.raise_for_status()
    return int(response.json())


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_runs_share_one_background_server_owned_by_winnow_server(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    with LLMTestServer(Script()) as llm:
        try:
            generate(env, tmp_path, llm.base_url, "first")
            status = json.loads(winnow(env, "server", "status", "--json").stdout)
            assert status["running"], status
            generate(env, tmp_path, llm.base_url, "second")
            again = json.loads(winnow(env, "server", "status", "--json").stdout)
            assert again["pid"] == status["pid"]  # found, not started again
            runs = flow_runs(status["api_url"])
            assert sorted(r["state_type"] for r in runs) == ["COMPLETED", "COMPLETED"]
        finally:
            stopped = winnow(env, "server", "stop")
    assert stopped.returncode == 0 and str(status["pid"]) in stopped.stdout
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{status['pid']}").exists():
        time.sleep(0.1)
    assert not Path(f"/proc/{status['pid']}").exists()
    assert not (tmp_path / "prefect-home" / "winnow-server.json").exists()
    assert "not running" in winnow(env, "server", "status").stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_prefect_api_url_wins(tmp_path: Path, prefect_api_url: str) -> None:
    """With PREFECT_API_URL set, the run reports there and no server is started."""
    env = env_for(tmp_path, PREFECT_API_URL=prefect_api_url)
    before = count_runs(prefect_api_url)
    with LLMTestServer(Script()) as llm:
        generate(env, tmp_path, llm.base_url, "elsewhere")
    assert not (tmp_path / "prefect-home" / "winnow-server.json").exists()
    assert count_runs(prefect_api_url) == before + 1


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_with_an_auth_string_the_background_server_asks_for_it(tmp_path: Path) -> None:
    """PREFECT_API_AUTH_STRING set: `winnow generate` starts the shared server with it and
    its run sends it; anyone without it gets 401."""
    from winnow.serving import auth

    secret = f"winnow:{os.urandom(12).hex()}"
    env = env_for(tmp_path, PREFECT_API_AUTH_STRING=secret)
    with LLMTestServer(Script()) as llm:
        try:
            generate(env, tmp_path, llm.base_url, "authed")
            status = json.loads(winnow(env, "server", "status", "--json").stdout)
            assert status["running"], status
            api_url = status["api_url"]
            refused = httpx.post(f"{api_url}/flow_runs/filter", json={}, timeout=10)
            assert refused.status_code == 401
            headers = auth.headers({auth.CLIENT_ENV: secret})
            runs = httpx.post(f"{api_url}/flow_runs/filter", json={}, headers=headers)
            assert [r["state_type"] for r in runs.json()] == ["COMPLETED"]
        finally:
            winnow(env, "server", "stop")
