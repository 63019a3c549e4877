"""Nothing left behind: however a run ends, no process it started survives it.

Each test starts a `winnow` command as a user would (no PREFECT_API_URL, Prefect's
temporary server per run: the server a killed run used to leave running), with a mark of
its own in the environment (``WINNOW_TEST_MARK``, which every process the run starts
inherits), lets it get to work against the test LLM server (a named test double), ends it
— SIGKILL of the run's process alone (the OOM killer), SIGTERM (a scheduler), Ctrl-C (SIGINT
to the terminal's process group) — and lists the processes that carry the mark: after a
few seconds there must be none, and the run's temporary directory must be gone. The same
for a run on a temporary Dask cluster, and, with the Docker backend, for a sandbox
container left mid-program by a killed run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tasks.core.janitor import CONTAINER_LABEL, TOKEN_ENV, marked_processes
from winnow.testing.llm_server import LLMTestServer, Script

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MARK = "WINNOW_TEST_MARK"


def env_for(tmp: Path, mark: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PREFECT_API"))}
    env.pop(TOKEN_ENV, None)
    env.update(
        WINNOW_PREFECT_SERVER="per-run",  # Prefect's temporary server, started by the run
        PREFECT_HOME=str(tmp / "prefect-home"),
        WINNOW_PROJECT_DIR=str(tmp / "project"),
        **{MARK: mark},
    )
    return env


def _as_from_a_terminal() -> None:
    """SIGINT as a terminal leaves it: a process started in the background of a shell
    (this test's, maybe) inherits it ignored, and Python then never raises Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "winnow.cli", *args],
        cwd=ROOT,
        env=env,
        start_new_session=True,  # its own group, as a command in a terminal has
        preexec_fn=_as_from_a_terminal,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def rows_file(tmp: Path, n: int) -> Path:
    path = tmp / "in.jsonl"
    path.write_text("".join(json.dumps({"instruction": f"row {i}"}) + "\n" for i in range(n)))
    return path


def wait_until(check, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {proc.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def run_token(pids: list[int]) -> str | None:
    """The janitor's token, read from a child of the run."""
    for pid in pids:
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in env:
            if item.startswith(f"{TOKEN_ENV}=".encode()):
                return item.split(b"=", 1)[1].decode()
    return None


def janitor_temp_dir(token: str) -> Path:
    """The run's temporary directory, as its janitor was told (its command line: the
    token, the directory, the run's pid)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            args = _cmdline(int(entry.name)).split()
            if len(args) >= 5 and args[1].endswith("janitor.py") and args[2] == token:
                return Path(args[3])
    raise AssertionError(f"no janitor runs for token {token}")


def assert_nothing_left(mark: str, temp_dir: Path | None, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while (left := marked_processes(mark, MARK)) and time.monotonic() < deadline:
        time.sleep(0.1)
    described = {pid: _cmdline(pid) for pid in left}
    assert not left, f"processes the run started are still running: {described}"
    if temp_dir is not None:
        wait_until(lambda: not temp_dir.exists(), 10, "the run's temporary directory to go")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return "?"


def end(proc: subprocess.Popen[str], how: str) -> None:
    if how == "SIGKILL":
        proc.send_signal(signal.SIGKILL)  # the run's process alone, as the OOM killer does
    elif how == "SIGTERM":
        proc.send_signal(signal.SIGTERM)
    else:  # Ctrl-C: the terminal sends SIGINT to the whole foreground group
        os.killpg(proc.pid, signal.SIGINT)
    limit = 30 if how == "Ctrl-C" else 60  # Ctrl-C: a 10 s grace, then it leaves
    try:
        proc.wait(limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        raise AssertionError(f"the run did not stop within {limit} s of {how}") from None


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "Ctrl-C"])
def test_a_run_ended_mid_way_leaves_no_process(tmp_path: Path, how: str) -> None:
    mark = uuid.uuid4().hex
    with LLMTestServer(Script(latency_ms=200)) as server:
        rows = rows_file(tmp_path, 2000)
        proc = start(
            ["generate", "--input", str(rows), "--out", str(tmp_path / "out.jsonl"),
             "--provider", "openai-compatible", "--model", "test-model",
             "--base-url", server.base_url, "--concurrency", "4"],
            env_for(tmp_path, mark),
        )  # fmt: skip
        try:
            wait_until(lambda: server.stats.chat_requests >= 8, 180, "requests", proc)
            started = [pid for pid in marked_processes(mark, MARK) if pid != proc.pid]
            # Prefect's temporary server at least (and the gate worker)
            assert started, "the run started no process: nothing would be tested"
            token = run_token(started)
            assert token, "the run's children carry no janitor token"
            temp_dir = janitor_temp_dir(token)
            assert temp_dir.is_dir()
            end(proc, how)
            assert_nothing_left(mark, temp_dir)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def test_a_killed_run_on_a_temporary_dask_cluster_leaves_no_worker(tmp_path: Path) -> None:
    mark = uuid.uuid4().hex
    with LLMTestServer(Script(latency_ms=200)) as server:
        rows = rows_file(tmp_path, 2000)
        sets = {"input": str(rows), "out": str(tmp_path / "out.jsonl"), "shard_size": "8",
                "task_runner": "dask", "dask_workers": "2", "concurrency": "2"}  # fmt: skip
        args = ["run", "generate", "--provider", "openai-compatible", "--model", "test-model"]
        args += ["--base-url", server.base_url]
        for key, value in sets.items():
            args += ["--set", f"{key}={value}"]
        proc = start(args, env_for(tmp_path, mark))
        try:
            wait_until(lambda: server.stats.chat_requests >= 4, 240, "requests", proc)
            workers = [p for p in marked_processes(mark, MARK) if "dask" in _cmdline(p) or
                       "multiprocessing" in _cmdline(p)]  # fmt: skip
            assert len(workers) >= 2, {p: _cmdline(p) for p in marked_processes(mark, MARK)}
            token = run_token(workers)
            assert token, "the workers carry no janitor token"
            temp_dir = janitor_temp_dir(token)
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            assert_nothing_left(mark, temp_dir)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def test_a_killed_runs_sandbox_container_is_removed(docker_engine: str, tmp_path: Path) -> None:
    """A process that runs a program in the Docker sandbox and is SIGKILLed while the
    program runs: its janitor removes the container (labelled with the run's token)."""
    import docker

    script = tmp_path / "hold.py"
    script.write_text(
        "import sys\n"
        "from tasks.core.janitor import ensure_janitor\n"
        "from tasks.sandbox.base import Limits\n"
        "from tasks.sandbox.docker_backend import DockerSandbox, connect\n"
        "ensure_janitor()\n"
        "box = DockerSandbox(connect(sys.argv[1]))\n"
        "print('ready', flush=True)\n"
        "box.run({'main.py': 'import time; time.sleep(300)'}, ['python3', 'main.py'],\n"
        "        Limits(wall_s=300, cpu_s=300))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    proc = subprocess.Popen(
        [sys.executable, str(script), docker_engine],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = docker.DockerClient(base_url=docker_engine)
    try:

        def ours() -> list:
            found = client.containers.list(filters={"label": CONTAINER_LABEL})
            return [c for c in found if c.labels.get("winnow.pid") == str(proc.pid)]

        wait_until(lambda: bool(ours()), 120, "the sandbox container", proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        wait_until(
            lambda: (
                not client.containers.list(all=True, filters={"label": f"winnow.pid={proc.pid}"})
            ),
            30,
            "the container to be removed",
        )
    finally:
        if proc.poll() is None:
            proc.kill()
        client.close()
