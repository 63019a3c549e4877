"""Gates in a process of their own, started early.

Great Expectations takes 2-3 s and 250 MB to import. Imported by the run itself, that
time comes either after the last LLM answer (when the last gate runs) or, imported in a
thread, out of the LLM client's share of the one interpreter lock while requests are in
flight. A worker process started with the run imports it on another core instead, while
the run is starting and sending; a gate then costs one round trip on a pipe.

The protocol is one JSON line each way: the suite and the shards' references in, the
``GateResult`` out (or an error, when the caller validates in its own process instead).
Shards behind a URL that only this process can see (``memory://``) are validated here.
The worker dies with the process that started it (:mod:`tasks.core.processes`), and
``WINNOW_GATE_WORKER=0`` turns it off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import IO

from tasks.core.processes import die_with_parent
from tasks.gates import sharded
from tasks.gates.gx import GateResult
from tasks.gates.suites import SuiteSpec
from tasks.store import fsio
from tasks.store.shards import ShardRef

ENV = "WINNOW_GATE_WORKER"


class GateWorker:
    """One worker per process: ``validate`` sends it a suite, or says it cannot."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        if os.environ.get(ENV, "1") == "0":
            return
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "tasks.gates.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                preexec_fn=_worker_preexec,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def validate(self, shards: Sequence[ShardRef], spec: SuiteSpec) -> GateResult | None:
        """The worker's verdict, or None (no worker, shards it cannot read, a worker that
        died): then the caller validates in its own process."""
        if os.environ.get(ENV, "1") == "0":
            return None
        if any(fsio.is_remote(s.path) and s.path.startswith("memory://") for s in shards):
            return None
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None or proc.stdin is None:
                return None
            request = {
                "spec": spec.model_dump(mode="json"),
                "shards": [s.model_dump() for s in shards],
                "chunk_rows": sharded.chunk_rows(),
            }
            try:
                proc.stdin.write(json.dumps(request) + "\n")
                proc.stdin.flush()
                line = _readline(proc.stdout)
            except (OSError, ValueError):
                return None
        if not line:
            return None
        answer = json.loads(line)
        return GateResult.model_validate(answer["result"]) if "result" in answer else None

    def stop(self) -> None:
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
            self._proc = None


def _worker_preexec() -> None:
    """Die with the parent, and yield the CPU to it: the worker's import fills the time
    a core would sit idle, instead of slowing the run's start."""
    die_with_parent()
    os.nice(10)


def _readline(stream: IO[str] | None) -> str:
    return stream.readline() if stream is not None else ""


_worker = GateWorker()


def worker() -> GateWorker:
    return _worker


def serve() -> None:
    """The worker's side: import GX at once, then answer one request a line."""
    from tasks.gates import gx

    gx.prepare()
    for line in sys.stdin:
        try:
            request = json.loads(line)
            spec = SuiteSpec.model_validate(request["spec"])
            shards = [ShardRef.model_validate(s) for s in request["shards"]]
            result = sharded.validate_shards(shards, spec, request.get("chunk_rows"))
            answer = {"result": result.model_dump(mode="json")}
        except Exception as exc:  # noqa: BLE001 - the caller validates itself instead
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
