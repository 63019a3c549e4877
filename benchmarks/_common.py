"""Helpers shared by the benchmark scripts: the test server in a subprocess, the machine
and its load, paired timings, busy-time accounting, peak memory of a child, tables.

Nothing here imports Winnow, so peer drivers running in other virtual environments can
use the prompt helpers too.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def bench_prompt(i: int) -> str:
    """The i-th request of the throughput benchmarks: distinct, so no tool can dedupe it."""
    return f"benchmark question number {i}"


def cpu_seconds() -> float:
    """CPU time (user + system) of this process, all its threads, and the children it has
    waited for: a cost per request that does not depend on how busy the machine is."""
    import resource

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def driver_args() -> Any:
    """The command line every throughput driver takes (Winnow's and the peers')."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=64)
    # for a driver with its own retry budget (curator): its retries, and whether a row
    # that still fails is counted as lost (instead of failing the whole run)
    parser.add_argument("--max-retries", type=int, default=3)
    parser.add_argument("--keep-going", action="store_true")
    return parser.parse_args()


# --- the test LLM server in its own process ----------------------------------------------


class ServerProcess:
    """``python -m MODULE --port 0 ARGS...`` in a subprocess (its own process, so its CPU
    is not charged to the process being measured); the module prints its base URL first."""

    def __init__(self, *args: str, module: str = "winnow.testing") -> None:
        self.cmd = [sys.executable, "-m", module, "--port", "0", *args]
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""

    def __enter__(self) -> ServerProcess:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "benchmarks")])}
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout is not None
        self.base_url = self.proc.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            self.__exit__()
            raise RuntimeError(f"the test server did not start: {self.cmd}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    @property
    def root_url(self) -> str:
        return self.base_url.removesuffix("/v1")

    def stats(self) -> dict[str, Any]:
        """The server's counts (``chat_requests``, ``max_in_flight``, ``by_hash`` ...)."""
        with urllib.request.urlopen(self.root_url + "/_stats") as response:
            return json.load(response)

    def reset(self) -> None:
        request = urllib.request.Request(self.root_url + "/_reset", data=b"", method="POST")
        with urllib.request.urlopen(request):
            pass


# --- the machine ---------------------------------------------------------------------------


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def machine() -> str:
    """One line: cores, CPU model, memory, OS, Python."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({model or platform.machine()}), {mem_gib:.0f} GiB, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain fixed-width table: first column left-aligned, the rest right-aligned."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for row in cells:
        rest = zip(row[1:], widths[1:], strict=True)
        line = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in rest]
        print("  ".join(line).rstrip())


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return "" if value is None else str(value)


# --- timings -------------------------------------------------------------------------------


def paired(
    first: Callable[[], object], second: Callable[[], object], n: int
) -> tuple[float, float]:
    """Median seconds of ``first`` and ``second``, run alternately ``n`` times each.

    Alternating keeps the comparison fair on a busy machine: load hits both equally.
    """
    first(), second()  # warm caches
    a, b = [], []
    for _ in range(n):
        for fn, times in ((first, a), (second, b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(a), statistics.median(b)


class BusyClock:
    """Wall time during which some work of a kind was under way, from any thread.

    Calls overlap (shards run in threads, a call may nest in another), so the busy time of
    a kind is the length of the union of its calls' intervals, not their sum.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.intervals: dict[str, list[tuple[float, float]]] = {}

    @contextmanager
    def busy(self, kind: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            end = time.perf_counter()
            with self._lock:
                self.intervals.setdefault(kind, []).append((start, end))

    def wrap(self, owner: Any, name: str, kind: str) -> None:
        """Replace ``owner.name`` (a function or method) with a timed version."""
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.busy(kind):
                return original(*args, **kwargs)

        timed.__wrapped__ = original  # type: ignore[attr-defined]
        setattr(owner, name, timed)

    def seconds(self, *kinds: str) -> float:
        """Length of the union of the intervals of ``kinds`` (all kinds when none given)."""
        with self._lock:
            spans = sorted(
                span
                for kind, found in self.intervals.items()
                if not kinds or kind in kinds
                for span in found
            )
        total, end = 0.0, float("-inf")
        for start, stop in spans:
            if start > end:
                total += stop - start
                end = stop
            elif stop > end:
                total += stop - end
                end = stop
        return total

    def count(self, kind: str) -> int:
        with self._lock:
            return len(self.intervals.get(kind, []))


# --- memory ----------------------------------------------------------------------------------


def run_measured(
    cmd: Sequence[str], env: dict[str, str] | None = None, cwd: Path = ROOT, sample_s: float = 0.2
) -> dict[str, Any]:
    """Run ``cmd``; its wall time, exit code, and peak memory two ways:

    - ``max_rss_mb``: the largest peak RSS of the process or any descendant it waited for
      (``wait4``'s rusage; the kernel keeps the maximum, not the sum);
    - ``tree_peak_mb``: the largest sum of the current RSS over the process and all its
      live descendants, sampled every ``sample_s`` (what the machine had to hold at once).
    """
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd), env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(sample_s):
            peak[0] = max(peak[0], _tree_rss_kb(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout_box: list[str] = []
    stderr_box: list[str] = []
    readers = [
        threading.Thread(target=_drain, args=(proc.stdout, stdout_box), daemon=True),
        threading.Thread(target=_drain, args=(proc.stderr, stderr_box), daemon=True),
    ]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    done.set()
    for r in readers:
        r.join(10)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "returncode": proc.returncode,
        "wall_s": wall,
        "max_rss_mb": usage.ru_maxrss / 1024,
        "tree_peak_mb": peak[0] / 1024,
        "stdout": "".join(stdout_box),
        "stderr": "".join(stderr_box),
    }


def _drain(stream: Any, box: list[str]) -> None:
    """Read a pipe to its end (so the child never blocks on a full pipe)."""
    box.append(stream.read())


def _tree_rss_kb(pid: int) -> int:
    """Sum of VmRSS over ``pid`` and its descendants, from /proc (0 for gone processes)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        child = int(entry.name)
        children.setdefault(int(fields.get("PPid", "0").strip() or 0), []).append(child)
        rss[child] = int(fields.get("VmRSS", "0 kB").split()[0]) if "VmRSS" in fields else 0
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        total += rss.get(current, 0)
        stack.extend(children.get(current, []))
    return total
