"""``winnow serve`` as a subprocess for the serve and UI tests: an isolated PREFECT_HOME,
the URL it prints, the API's view of its deployments, and a stop that reports the exit
code and any process of its tree left alive."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tasks.core.paths import SOURCE_ROOT
from winnow.serving import auth

URL_LINE = re.compile(r"Prefect server: (http://[0-9.]+:\d+/api)")


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class Served:
    process: subprocess.Popen
    lines: list[str] = field(default_factory=list)
    api_url: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # the auth string it was given

    @property
    def ui_url(self) -> str:
        return self.api_url.removesuffix("/api")

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_url(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self.api_url:
            if self.process.poll() is not None:
                raise AssertionError(f"winnow serve exited early:\n{self.output()}")
            time.sleep(0.2)
        assert self.api_url, f"winnow serve printed no server URL:\n{self.output()}"
        return self.api_url

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        kwargs.setdefault("headers", self.headers)
        response = httpx.request(method, f"{self.api_url}{path}", timeout=30, **kwargs)
        response.raise_for_status()
        return response

    def deployments(self) -> list[dict]:
        return self.api("POST", "/deployments/filter", json={}).json()

    def wait_deployments(self, names: set[str], timeout_s: float) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        found: list[dict] = []
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"winnow serve exited:\n{self.output()}")
            try:
                found = self.deployments()
            except httpx.HTTPError:
                found = []
            if {d["name"] for d in found} >= names:
                return found
            time.sleep(1)
        raise AssertionError(
            f"deployments {sorted(names)} not served after {timeout_s:.0f} s; "
            f"got {[d['name'] for d in found]}\n{self.output()}"
        )

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 90) -> tuple[int, set]:
        """Send ``sig``; the exit code and the pids of its tree still alive afterwards."""
        tree = descendants(self.process.pid)
        self.process.send_signal(sig)
        code = self.process.wait(timeout_s)
        time.sleep(0.5)
        return code, {p for p in tree if alive(p)}


@pytest.fixture
def winnow_serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Factory: ``winnow_serve("--only", "rag-qa")`` starts ``winnow serve --port 0 ...``
    with its own PREFECT_HOME; whatever is left is killed at teardown."""
    started: list[Served] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Served:
        home = tmp_path / "prefect-home"
        home.mkdir(exist_ok=True)
        full_env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        full_env.update(
            PREFECT_HOME=str(home),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            DO_NOT_TRACK="1",
            PREFECT_LOGGING_LEVEL="INFO",
            COLUMNS="200",
        )
        full_env.update(env or {})
        process = subprocess.Popen(
            [sys.executable, "-m", "winnow.cli", "serve", "--port", "0", *args],
            cwd=str(SOURCE_ROOT),
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        served = Served(process, headers=auth.headers(full_env))

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                served.lines.append(line.rstrip())
                match = URL_LINE.search(line)
                if match and not served.api_url:
                    served.api_url = match.group(1)

        threading.Thread(target=read, daemon=True).start()
        started.append(served)
        return served

    yield start
    for served in started:
        tree = descendants(served.process.pid)
        if served.process.poll() is None:
            served.process.kill()
            served.process.wait(10)
        for pid in tree:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
