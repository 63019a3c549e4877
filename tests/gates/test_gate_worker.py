"""Gates in a worker process: the same verdict as in the run's own process, GX never
imported by the run, a fallback when the worker cannot help, and no worker left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tasks.gates.gx import GateResult
from tasks.gates.sharded import validate_shards
from tasks.gates.suites import parse_suite
from tasks.gates.worker import GateWorker
from tasks.pipeline.runner import write_input_shards

ROOT = Path(__file__).resolve().parents[2]

SUITE = parse_suite(
    """{"name": "w.test", "severity": "critical", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "text"}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "id"}},
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": "n", "min_value": 0, "max_value": 5}}]}"""
)


def shards():
    rows = [{"id": f"r{i % 9}", "text": None if i == 3 else "x", "n": i} for i in range(12)]
    return write_input_shards(rows, 5, "worker")


def same(a: GateResult, b: GateResult) -> bool:
    keep = {"duration_s"}
    return a.model_dump(exclude=keep) == b.model_dump(exclude=keep)


def test_the_worker_gives_the_verdict_the_run_would() -> None:
    worker = GateWorker()
    worker.start()
    try:
        refs = shards()
        remote = worker.validate(refs, SUITE)
        assert remote is not None and not remote.success and remote.n_failed == 3
        assert same(remote, validate_shards(refs, SUITE))
    finally:
        worker.stop()


def test_without_a_worker_the_caller_validates_itself(monkeypatch) -> None:
    worker = GateWorker()
    assert worker.validate(shards(), SUITE) is None  # never started
    monkeypatch.setenv("WINNOW_GATE_WORKER", "0")
    worker.start()
    assert worker.validate(shards(), SUITE) is None  # turned off
    monkeypatch.delenv("WINNOW_GATE_WORKER")
    worker.start()
    worker._proc.kill()  # a worker that died
    worker._proc.wait()
    assert worker.validate(shards(), SUITE) is None


def test_a_run_gates_without_importing_gx_and_leaves_no_worker(tmp_path: Path) -> None:
    """A run's gate goes to the worker: GX is never imported in the run's process; and
    when that process is SIGKILLed, its worker dies with it."""
    code = (
        "import sys, os, time\n"
        "from tasks.gates.worker import worker\n"
        "from tasks.gates.suites import load_suite\n"
        "from tasks.pipeline.runner import write_input_shards\n"
        "worker().start()\n"
        "refs = write_input_shards([{'_index': i, 'completion': 'c', 'provenance': {'a': 1}}"
        " for i in range(20)], 7, 'w')\n"
        "result = worker().validate(refs, load_suite('generate.completions'))\n"
        "assert result is not None and result.success, result\n"
        "assert 'great_expectations' not in sys.modules\n"
        "print(worker()._proc.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    env = {**os.environ, "WINNOW_PROJECT_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        worker_pid = int(proc.stdout.readline())  # type: ignore[union-attr]
        os.kill(worker_pid, 0)  # alive while its parent is
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not alive(worker_pid):
            return
        time.sleep(0.05)
    raise AssertionError(f"gate worker {worker_pid} outlived the run that started it")


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for whoever reaps orphans here."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
