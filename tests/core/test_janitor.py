"""The run's janitor (``tasks/core/janitor.py``): whatever ends a process, what it started
goes with it. Fast checks on plain processes; the `winnow` commands are killed for real
in ``tests/ops/test_nothing_left_behind.py``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.core.janitor import (
    SPARE_ENV,
    TOKEN_ENV,
    descendants,
    marked_processes,
    unmarked_env,
)
from tasks.sandbox.docker_backend import OWNER_HOST, OWNER_PID, reap_orphans

ROOT = Path(__file__).resolve().parents[2]

# A process that starts a janitor, two children (one ignoring SIGTERM, in its own
# session), a temporary directory and a forked child, prints them, then waits.
OWNER = """
import os, subprocess, sys, tempfile, time
from tasks.core.janitor import ensure_janitor
janitor = ensure_janitor()
plain = subprocess.Popen(["sleep", "300"])
stubborn = subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 300 & wait"],
                            start_new_session=True)
from tasks.core.janitor import unmarked_env
spared = subprocess.Popen(["sleep", "30"], env=unmarked_env(), start_new_session=True)
forked = os.fork()
if forked == 0:
    time.sleep(300)
    os._exit(0)
print(janitor.token, tempfile.mkdtemp(), spared.pid, flush=True)
time.sleep(1.5)  # long enough for the janitor to note the forked child
if sys.argv[1] == "exit":
    os._exit(0)
time.sleep(300)
"""


def start_owner(how: str) -> tuple[subprocess.Popen[str], str, Path]:
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER, how],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    token, temp, spared = proc.stdout.readline().split()
    return proc, token, Path(temp), int(spared)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def wait_for(check, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


@pytest.mark.parametrize("how", ["SIGKILL", "exit"])
def test_what_a_process_started_goes_when_it_goes(how: str) -> None:
    proc, token, temp, spared = start_owner(how)
    try:
        assert temp.exists() and temp.parent.name == f"winnow-{token}"
        marked = marked_processes(token)
        assert len(marked) >= 3, marked  # sleep, sh and its sleep: exec'd with the token
        children = [p for p in descendants(proc.pid) if p != spared]
        assert len(children) >= 4, children  # and the forked child, not marked
        if how == "SIGKILL":
            time.sleep(1.0)  # long enough for the janitor to note the forked child
            proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        # the SIGTERM-proof shell takes the grace period, then SIGKILL
        assert wait_for(lambda: not marked_processes(token)), marked_processes(token)
        assert wait_for(lambda: not any(alive(p) for p in children)), children
        assert wait_for(lambda: not temp.parent.exists()), "the run's temp dir is left"
        assert alive(spared), "a process started to outlive the run was stopped"
        os.kill(spared, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_process_meant_to_outlive_the_run_is_started_unmarked(monkeypatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "abc")
    assert TOKEN_ENV not in unmarked_env()
    assert unmarked_env({TOKEN_ENV: "x", "A": "1"}) == {"A": "1", SPARE_ENV: "1"}


class FakeContainer:
    """A test double of a docker SDK container: its labels, and whether it was removed."""

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels
        self.removed = False

    def remove(self, force: bool = False) -> None:
        self.removed = force


class FakeContainers:
    def __init__(self, containers: list[FakeContainer]) -> None:
        self.containers = containers

    def list(self, all: bool = False, filters: dict | None = None) -> list[FakeContainer]:
        key = (filters or {}).get("label", "")
        return [c for c in self.containers if key in c.labels]


class FakeDocker:
    """A test double of a docker SDK client: only ``containers.list``."""

    def __init__(self, containers: list[FakeContainer]) -> None:
        self.containers = FakeContainers(containers)


def test_a_sandbox_container_whose_process_is_gone_is_reaped_at_the_next_start() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    host = socket.gethostname()
    orphan = FakeContainer({OWNER_PID: str(gone.pid), OWNER_HOST: host})
    alive = FakeContainer({OWNER_PID: str(os.getpid()), OWNER_HOST: host})
    elsewhere = FakeContainer({OWNER_PID: str(gone.pid), OWNER_HOST: "another-host"})
    foreign = FakeContainer({"app": "not winnow"})
    assert reap_orphans(FakeDocker([orphan, alive, elsewhere, foreign])) == 1
    assert orphan.removed
    assert not (alive.removed or elsewhere.removed or foreign.removed)
