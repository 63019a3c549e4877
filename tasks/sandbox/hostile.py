"""The hostile-code suite, written once as data and run against every backend.

Each case is a program that attacks the host, what the verdict must say, and which host
checks must hold afterwards. ``run_suite`` plants the secrets the programs go looking for
(an environment variable, files in a HOME-like dir and under the real home, a listening
socket, a directory outside the sandbox) and checks the host is unaffected.

``python -m tasks.sandbox.hostile [bwrap|docker|auto|all]`` prints the table (``all``:
every backend, then a case x backend matrix).
"""

from __future__ import annotations

import os
import resource
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from tasks.sandbox.base import Limits, Sandbox, Stage, Verdict

HostCheck = Literal["no_leak", "outside_untouched", "no_stray", "listener_untouched", "host_memory"]

SUITE_LIMITS = Limits(
    cpu_s=2, wall_s=4, memory_mb=256, processes=32, output_bytes=200_000, tmp_mb=16
)
PHP_FLAGS = ["-d", "display_errors=stderr", "-d", "log_errors=0", "-d", "memory_limit=128M"]


class HostileCase(BaseModel):
    name: str
    language: Literal["python", "php"]
    code: str  # str.format placeholders: {secret_name} {home_file} {root_file} {outside} ...
    stages: tuple[Stage, ...]  # any of these is fine
    reason: tuple[str, ...] = ()  # the reason must contain one of these (case-insensitive)
    passed: bool = False
    checks: tuple[HostCheck, ...] = ()


_PY_STRAY = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", "{marker}"])
    os._exit(0)
time.sleep(0.2)
print("daemon left behind")
"""

HOSTILE_CASES: list[HostileCase] = [
    HostileCase(
        name="fork bomb",
        language="python",
        code="import os\nwhile True:\n    os.fork()\n",
        stages=("limit",),
        reason=("process limit",),
        checks=("no_stray",),
    ),
    HostileCase(
        name="fork bomb (persistent)",
        language="python",
        code="import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n"
        "        pass\n",
        stages=("timeout", "limit"),
        reason=("wall time", "cpu time", "process limit"),
        checks=("no_stray",),
    ),
    HostileCase(
        name="thread bomb",
        language="python",
        code="import threading, time\nwhile True:\n"
        "    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n",
        stages=("limit",),
        reason=("process limit",),
    ),
    HostileCase(
        name="memory bomb",
        language="python",
        code="chunks = []\nwhile True:\n    chunks.append(b'x' * 10_000_000)\n",
        stages=("limit",),
        reason=("memory limit",),
        checks=("host_memory",),
    ),
    HostileCase(
        name="endless loop",
        language="python",
        code="while True:\n    pass\n",
        stages=("timeout",),
        reason=("cpu time", "wall time"),
    ),
    HostileCase(
        name="sleep forever",
        language="python",
        code="import time\ntime.sleep(10_000)\n",
        stages=("timeout",),
        reason=("wall time",),
    ),
    HostileCase(
        name="network connect",
        language="python",
        code="import socket\nfor host in ('127.0.0.1', '1.1.1.1'):\n"
        "    try:\n        socket.create_connection((host, {port}), timeout=2)\n"
        "        print('connected to', host)\n    except OSError as exc:\n"
        "        print(host, exc)\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n",
        stages=("execute",),
        reason=("network is unreachable", "connection refused", "oserror"),
        checks=("listener_untouched",),
    ),
    HostileCase(
        name="write outside tmp",
        language="python",
        code="import os\nfor path in ({outside!r} + '/pwned', '/usr/pwned', '/etc/pwned',"
        " '/pwned'):\n    try:\n        open(path, 'w').write('x')\n        print('wrote', path)\n"
        "    except OSError as exc:\n        print(exc)\nopen({outside!r} + '/pwned', 'w')\n",
        stages=("execute",),
        reason=("read-only file system", "no such file", "permission denied"),
        checks=("outside_untouched",),
    ),
    HostileCase(
        name="read host environment",
        language="python",
        code="import os, glob\nfound = os.environ.get({secret_name!r})\n"
        "for path in glob.glob('/proc/*/environ'):\n    try:\n"
        "        data = open(path, 'rb').read()\n    except OSError:\n        continue\n"
        "    if {secret_name!r}.encode() in data:\n        found = data.decode(errors='replace')\n"
        "print('found:', found)\nassert found is None, 'secret found'\n"
        "raise SystemExit('secret not visible')\n",
        stages=("execute",),
        reason=("secret not visible",),
        checks=("no_leak",),
    ),
    HostileCase(
        name="read home files",
        language="python",
        code="import os\nleaked = []\nfor path in ({home_file!r}, {root_file!r}, '/etc/shadow',"
        " '/root/.bash_history', os.path.expanduser('~/.ssh/id_rsa')):\n    try:\n"
        "        leaked.append(open(path).read())\n    except OSError as exc:\n"
        "        print(exc)\nprint(leaked)\nraise SystemExit('no host file readable' if not"
        " leaked else 'leaked')\n",
        stages=("execute",),
        reason=("no host file readable",),
        checks=("no_leak",),
    ),
    HostileCase(
        name="kill parent",
        language="python",
        code="import os, signal, time\nppid = os.getppid()\nif ppid > 1:\n"
        "    try:\n        os.kill(ppid, signal.SIGKILL)\n    except OSError as exc:\n"
        "        print(exc)\ntry:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError as exc:\n"
        "    print(exc)\ntime.sleep(0.3)\nraise SystemExit('parent survived')\n",
        stages=("execute", "timeout"),
        reason=("parent survived", "killed by", "exit code"),
        checks=("no_stray",),
    ),
    HostileCase(
        name="leave a daemon",
        language="python",
        code=_PY_STRAY,
        stages=("execute",),
        passed=True,
        checks=("no_stray",),
    ),
    HostileCase(
        name="print gigabytes",
        language="python",
        code="import sys\nline = 'x' * 65536\nwhile True:\n    sys.stdout.write(line)\n",
        stages=("limit",),
        reason=("output limit",),
        checks=("host_memory",),
    ),
    HostileCase(
        name="fill the disk",
        language="python",
        code="f = open('big', 'wb')\nwhile True:\n    f.write(b'x' * 1_000_000)\n",
        stages=("limit",),
        reason=("disk limit", "file size limit", "memory limit"),
    ),
    HostileCase(
        name="fill /dev/shm",
        language="python",
        code="i = 0\nwhile True:\n    with open(f'/dev/shm/f{{i}}', 'wb') as f:\n"
        "        f.write(b'x' * 1_000_000)\n    i += 1\n",
        stages=("limit",),
        reason=("disk limit", "memory limit"),
        checks=("host_memory",),
    ),
    HostileCase(
        name="php endless loop",
        language="php",
        code="<?php\nwhile (true) {{}}\n",
        stages=("timeout",),
        reason=("cpu time", "wall time"),
    ),
    HostileCase(
        name="php memory bomb",
        language="php",
        code="<?php\nini_set('memory_limit', '-1');\n$a = [];\n"
        "while (true) {{ $a[] = str_repeat('x', 10000000); }}\n",
        stages=("limit",),
        reason=("memory limit",),
    ),
    HostileCase(
        name="php read environment",
        language="php",
        code='<?php\n$v = getenv({secret_name_php});\necho var_export($v, true), "\\n";\n'
        'if ($v !== false) {{ echo $v; exit(0); }}\nfwrite(STDERR, "secret not visible\\n");'
        "\nexit(3);\n",
        stages=("execute",),
        reason=("secret not visible",),
        checks=("no_leak",),
    ),
    HostileCase(
        name="php network connect",
        language="php",
        code="<?php\n$f = @fsockopen('127.0.0.1', {port}, $errno, $errstr, 2);\n"
        "if ($f) {{ echo 'connected'; exit(0); }}\nfwrite(STDERR, \"no network: $errstr\\n\");"
        "\nexit(4);\n",
        stages=("execute",),
        reason=("no network",),
        checks=("listener_untouched",),
    ),
]


class CaseResult(BaseModel):
    backend: str
    case: str
    ok: bool  # the verdict matched and every host check held
    verdict: Verdict
    problems: list[str] = []


@dataclass
class HostPlant:
    """Secrets and tripwires planted on the host for one suite run."""

    secret_name: str
    secret_value: str
    home_file: Path
    root_file: Path | None
    outside: Path
    listener: socket.socket
    port: int
    marker: str

    def fields(self) -> dict[str, object]:
        return {
            "secret_name": self.secret_name,
            "secret_name_php": repr(self.secret_name),
            "home_file": str(self.home_file),
            "root_file": str(self.root_file or "/root/.winnow-canary"),
            "outside": str(self.outside),
            "port": self.port,
            "marker": self.marker,
        }


@contextmanager
def planted() -> Iterator[HostPlant]:
    """Plant a secret env var, home files, an outside dir and a listener; clean up after."""
    value = "winnow-canary-" + secrets.token_hex(8)
    name = "WINNOW_HOSTILE_SECRET"
    with tempfile.TemporaryDirectory(prefix="winnow-hostile-") as tmp:
        home = Path(tmp) / "home"
        (home / ".ssh").mkdir(parents=True)
        home_file = home / ".ssh" / "id_rsa"
        home_file.write_text(value)
        outside = Path(tmp) / "outside"
        outside.mkdir(mode=0o777)
        outside.chmod(0o777)  # writable by anyone: only the sandbox can stop the write
        root_file: Path | None = None
        real_home = Path.home()
        try:
            root_file = real_home / f".winnow-canary-{secrets.token_hex(4)}"
            root_file.write_text(value)
        except OSError:
            root_file = None
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        saved = {k: os.environ.get(k) for k in (name, "HOME")}
        os.environ[name] = value
        os.environ["HOME"] = str(home)
        try:
            yield HostPlant(
                secret_name=name,
                secret_value=value,
                home_file=home_file,
                root_file=root_file,
                outside=outside,
                listener=listener,
                port=listener.getsockname()[1],
                marker=f"{9000 + secrets.randbelow(900)}.{secrets.randbelow(10**6)}",
            )
        finally:
            for key, old in saved.items():
                if old is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = old
            listener.close()
            if root_file is not None:
                root_file.unlink(missing_ok=True)


def _stray_processes(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry.name))
    return found


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def program_for(case: HostileCase, plant: HostPlant) -> tuple[dict[str, str], list[str]]:
    code = case.code.format(**plant.fields())
    if case.language == "python":
        return {"main.py": code}, ["python3", "main.py"]
    return {"main.php": code}, ["php", *PHP_FLAGS, "main.php"]


def check_case(
    case: HostileCase, verdict: Verdict, plant: HostPlant, rss_before: float
) -> list[str]:
    """Everything wrong with this outcome; empty when the sandbox held."""
    problems = []
    if verdict.passed != case.passed:
        problems.append(f"passed={verdict.passed}, expected {case.passed}")
    if verdict.stage not in case.stages:
        problems.append(f"stage {verdict.stage!r} not in {case.stages}")
    if case.reason and not any(r.lower() in verdict.reason.lower() for r in case.reason):
        problems.append(f"reason {verdict.reason!r} mentions none of {case.reason}")
    output = verdict.stdout + verdict.stderr + verdict.reason
    if "no_leak" in case.checks and plant.secret_value in output:
        problems.append("secret leaked into the sandbox")
    if "outside_untouched" in case.checks and any(plant.outside.iterdir()):
        problems.append("a file appeared outside the sandbox")
    if "no_stray" in case.checks:
        time.sleep(0.1)
        if _stray_processes(plant.marker):
            problems.append("processes left behind")
    if "listener_untouched" in case.checks:
        try:
            plant.listener.accept()[0].close()
            problems.append("the host listener got a connection")
        except BlockingIOError:
            pass
    if "host_memory" in case.checks and _max_rss_mb() - rss_before > 200:
        problems.append(f"host memory grew by {_max_rss_mb() - rss_before:.0f} MB")
    return problems


def run_suite(
    sandbox: Sandbox, cases: list[HostileCase] | None = None, limits: Limits = SUITE_LIMITS
) -> list[CaseResult]:
    results = []
    with planted() as plant:
        for case in cases or HOSTILE_CASES:
            results.append(run_case(sandbox, case, plant, limits))
    return results


def run_case(sandbox: Sandbox, case: HostileCase, plant: HostPlant, limits: Limits) -> CaseResult:
    files, command = program_for(case, plant)
    rss_before = _max_rss_mb()
    verdict = sandbox.run(files, command, limits)
    problems = check_case(case, verdict, plant, rss_before)
    if _stray_processes(plant.marker):
        problems.append("processes left behind")
    return CaseResult(
        backend=sandbox.name, case=case.name, ok=not problems, verdict=verdict, problems=problems
    )


def format_table(results: list[CaseResult]) -> str:
    """A plain-text table: one row per case and backend, then totals per backend."""
    rows = [("backend", "case", "result", "stage", "reason", "s")]
    for r in results:
        reason = r.verdict.reason if r.ok else "; ".join(r.problems)
        rows.append(
            (
                r.backend,
                r.case,
                "contained" if r.ok else "FAILED",
                r.verdict.stage,
                reason[:70],
                f"{r.verdict.duration_s:.2f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for backend in sorted({r.backend for r in results}):
        mine = [r for r in results if r.backend == backend]
        lines.append(f"{backend}: {sum(r.ok for r in mine)}/{len(mine)} contained")
    return "\n".join(lines)


BACKENDS = ("bwrap", "docker")


def format_matrix(results: list[CaseResult], unavailable: dict[str, str] | None = None) -> str:
    """One row per case, one column per backend: ``contained`` or ``ESCAPED``; a last
    row counts the contained cases per backend. A backend that could not run is a
    column of ``unavailable`` (and its reason below the table)."""
    unavailable = unavailable or {}
    backends = sorted({r.backend for r in results} | set(unavailable))
    cell = {(r.case, r.backend): "contained" if r.ok else "ESCAPED" for r in results}
    cases = list(dict.fromkeys(r.case for r in results)) or [c.name for c in HOSTILE_CASES]

    def status(case: str, backend: str) -> str:
        return "unavailable" if backend in unavailable else cell.get((case, backend), "-")

    def contained(backend: str) -> str:
        return f"{sum(cell.get((c, backend)) == 'contained' for c in cases)}/{len(cases)}"

    rows = [("case", *backends)]
    rows += [(case, *(status(case, b) for b in backends)) for case in cases]
    rows.append(("contained", *(contained(b) for b in backends)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.insert(len(lines) - 1, lines[1])
    lines += [f"{b}: unavailable: {why}" for b, why in sorted(unavailable.items())]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Run the suite on the backends named (``all``: every one) and print the tables.
    Exit 1 if any case escaped, or, with ``all``, if a backend could not run at all."""
    from tasks.sandbox.base import SandboxUnavailable
    from tasks.sandbox.select import get_sandbox

    kinds = argv or ["auto"]
    every = "all" in kinds
    if every:
        kinds = list(BACKENDS)
    results: list[CaseResult] = []
    unavailable: dict[str, str] = {}
    for kind in kinds:
        try:
            sandbox = get_sandbox(kind)  # type: ignore[arg-type]
        except SandboxUnavailable as exc:
            if not every:
                raise
            unavailable[kind] = str(exc)
            continue
        results += run_suite(sandbox)
    print(format_table(results))
    if every:
        print()
        print(format_matrix(results, unavailable))
    return 0 if all(r.ok for r in results) and not unavailable else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
