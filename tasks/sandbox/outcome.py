"""Turn what a sandboxed run did into a Verdict: shared by every backend.

Backends report raw facts (exit status, captured output, which limit they enforced
themselves); this module decides the stage and writes a reason a person can read.
"""

from __future__ import annotations

import re
import signal

from tasks.sandbox.base import Limits, Stage, Verdict

TAIL_CHARS = 4000

# Messages the interpreters print when an rlimit/cgroup refuses them, mapped to a reason.
_LIMIT_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"\bMemoryError\b|Allowed memory size of \d+ bytes exhausted|Out of memory"),
        "memory limit",
    ),
    (
        re.compile(
            r"can't start new thread|Resource temporarily unavailable|fork\(\) failed|"
            r"Cannot allocate memory.*fork|Unable to fork"
        ),
        "process limit",
    ),
    (re.compile(r"No space left on device|File too large|Disk quota exceeded"), "disk limit"),
]


class Capture:
    """Accumulates a run's output, keeping at most ``cap`` bytes in total.

    Printing gigabytes must not exhaust host memory: once the cap is reached further
    bytes are dropped and ``exceeded`` is set so the backend kills the run.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.total = 0
        self.exceeded = False
        self.stdout = bytearray()
        self.stderr = bytearray()

    def add(self, data: bytes, is_stderr: bool) -> None:
        room = self.cap - self.total
        if len(data) > room:
            self.exceeded = True
            data = data[: max(room, 0)]
        self.total += len(data)
        (self.stderr if is_stderr else self.stdout).extend(data)


def tail(data: bytes | bytearray, chars: int = TAIL_CHARS) -> str:
    text = bytes(data[-chars * 4 :]).decode("utf-8", errors="replace")
    return text[-chars:]


def last_error_line(stderr: str, stdout: str = "") -> str:
    """The line that explains a failure: a traceback's last line, PHP's fatal error."""
    for text in (stderr, stdout):
        # Python 3.11+ underlines the failing expression with ^ and ~: not an explanation.
        lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip().strip("^~ ")]
        for line in reversed(lines):
            if re.match(r"PHP (Fatal|Parse) error:|Fatal error:|Parse error:", line):
                return re.sub(r"\s+", " ", line.removeprefix("PHP ")).strip()
        if lines:
            last = lines[-1]
            # A bare ``AssertionError`` says little: add the failing source line.
            if re.fullmatch(r"[A-Za-z_.]*Error", last) and len(lines) >= 2:
                return f"{last}: {lines[-2]}"
            return last
    return ""


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def decide(
    *,
    backend: str,
    limits: Limits,
    exit_code: int | None,
    capture: Capture,
    duration_s: float,
    wall_timed_out: bool = False,
    oom_killed: bool = False,
    signal_num: int | None = None,
) -> Verdict:
    """Classify a finished run. ``signal_num`` is the signal that ended the program, if
    any (bwrap reports it as exit 128+n, Docker as 128+n too)."""
    stdout, stderr = tail(capture.stdout), tail(capture.stderr)
    stage: Stage = "execute"
    reason = ""
    if capture.exceeded:
        stage, reason = "limit", f"output limit ({limits.output_bytes} bytes) exceeded"
    elif wall_timed_out:
        stage, reason = "timeout", f"wall time limit ({limits.wall_s:g}s) exceeded"
    elif oom_killed:
        stage, reason = "limit", f"memory limit ({limits.memory_mb} MB) exceeded"
    elif signal_num == signal.SIGXCPU or (
        signal_num == signal.SIGKILL and duration_s >= limits.cpu_s
    ):
        stage, reason = "timeout", f"CPU time limit ({limits.cpu_s:g}s) exceeded"
    elif signal_num == signal.SIGXFSZ:
        stage, reason = "limit", "file size limit exceeded"
    elif exit_code != 0:
        detail = last_error_line(stderr, stdout)
        for pattern, what in _LIMIT_PATTERNS:
            if pattern.search(stderr) or pattern.search(stdout):
                stage = "limit"
                reason = f"{what}: {detail}" if detail else what
                break
        else:
            if signal_num is not None:
                reason = f"killed by {_signal_name(signal_num)}"
            else:
                reason = detail or f"exit code {exit_code}"
            if detail and f"exit code {exit_code}" not in reason:
                reason = f"{reason} (exit code {exit_code})"
    passed = stage == "execute" and exit_code == 0
    return Verdict(
        passed=passed,
        stage=stage,
        exit_code=exit_code,
        stdout=stdout,
        stderr=stderr,
        duration_s=round(duration_s, 4),
        reason=reason,
        backend=backend,
    )
