"""Fast tests of the sandbox's pure parts: classification, output cap, selection."""

from __future__ import annotations

import signal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.sandbox import bwrap as bwrap_mod
from tasks.sandbox import docker_backend, select
from tasks.sandbox.base import Limits, SandboxUnavailable
from tasks.sandbox.outcome import Capture, decide, last_error_line

LIMITS = Limits(cpu_s=2, wall_s=5, memory_mb=128, output_bytes=2048)


def _capture(stderr: str = "", stdout: str = "") -> Capture:
    cap = Capture(10_000)
    cap.add(stdout.encode(), False)
    cap.add(stderr.encode(), True)
    return cap


@given(st.lists(st.binary(max_size=3000), max_size=20), st.integers(1024, 8192))
def test_capture_never_keeps_more_than_cap(chunks: list[bytes], cap: int) -> None:
    c = Capture(cap)
    for i, chunk in enumerate(chunks):
        c.add(chunk, i % 2 == 0)
    assert len(c.stdout) + len(c.stderr) <= cap
    assert c.exceeded == (sum(map(len, chunks)) > cap)


@pytest.mark.parametrize(
    ("kwargs", "stage", "reason"),
    [
        ({"exit_code": 0}, "execute", ""),
        ({"exit_code": -9, "wall_timed_out": True}, "timeout", "wall time limit (5s)"),
        ({"exit_code": 152, "signal_num": signal.SIGXCPU}, "timeout", "CPU time limit (2s)"),
        ({"exit_code": 137, "oom_killed": True}, "limit", "memory limit (128 MB)"),
        ({"exit_code": 153, "signal_num": signal.SIGXFSZ}, "limit", "file size limit"),
        ({"exit_code": 139, "signal_num": signal.SIGSEGV}, "execute", "killed by SIGSEGV"),
    ],
)
def test_decide_classifies_limits(kwargs: dict, stage: str, reason: str) -> None:
    v = decide(backend="x", limits=LIMITS, capture=_capture(), duration_s=0.5, **kwargs)
    assert v.stage == stage
    assert v.reason.startswith(reason)
    assert v.passed == (stage == "execute" and kwargs["exit_code"] == 0)


def test_decide_output_limit_wins() -> None:
    cap = Capture(1024)
    cap.add(b"x" * 5000, False)
    v = decide(backend="x", limits=LIMITS, exit_code=-9, capture=cap, duration_s=0.1)
    assert (v.passed, v.stage) == (False, "limit")
    assert v.reason == "output limit (2048 bytes) exceeded"


@pytest.mark.parametrize(
    ("stderr", "reason"),
    [
        ("Traceback...\nMemoryError\n", "memory limit"),
        ("BlockingIOError: [Errno 11] Resource temporarily unavailable\n", "process limit"),
        ("RuntimeError: can't start new thread\n", "process limit"),
        ("OSError: [Errno 28] No space left on device\n", "disk limit"),
        ("PHP Fatal error:  Allowed memory size of 134217728 bytes exhausted\n", "memory limit"),
    ],
)
def test_decide_reads_limit_messages(stderr: str, reason: str) -> None:
    v = decide(backend="x", limits=LIMITS, exit_code=1, capture=_capture(stderr), duration_s=0.1)
    assert v.stage == "limit"
    assert v.reason.startswith(reason)


def test_last_error_line_python_and_php() -> None:
    tb = (
        'Traceback (most recent call last):\n  File "main.py", line 4, in <module>\n'
        "    assert f(2) == 5\n           ^^^^^^^^^\nAssertionError\n"
    )
    assert last_error_line(tb) == "AssertionError: assert f(2) == 5"
    php = "PHP Fatal error:  Uncaught Exception: boom in /work/main.php:3\nStack trace:\n#0 {main}"
    assert last_error_line(php) == "Fatal error: Uncaught Exception: boom in /work/main.php:3"
    assert last_error_line("", "") == ""


def test_plain_failure_reason_has_exit_code() -> None:
    v = decide(backend="x", limits=LIMITS, exit_code=3, capture=_capture(), duration_s=0.1)
    assert (v.stage, v.reason) == ("execute", "exit code 3")


def test_no_backend_at_all_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker_backend, "engine_address", lambda: None)
    monkeypatch.setattr(bwrap_mod.shutil, "which", lambda name: None)
    bwrap_mod.probe.cache_clear()
    try:
        with pytest.raises(SandboxUnavailable) as err:
            select.get_sandbox("auto")
    finally:
        bwrap_mod.probe.cache_clear()
    message = str(err.value)
    assert "apt-get install -y bubblewrap" in message
    assert "docker.io" in message


def test_docker_without_engine_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(docker_backend.os.path, "exists", lambda p: False)
    with pytest.raises(SandboxUnavailable, match="no Docker engine"):
        select.get_sandbox("docker")


def test_docker_engine_that_does_not_answer(tmp_path) -> None:
    with pytest.raises(SandboxUnavailable, match="does not answer"):
        docker_backend.connect(f"unix://{tmp_path}/nothing.sock", timeout=1)


def test_tar_payload_refuses_escapes() -> None:
    with pytest.raises(ValueError):
        docker_backend._tar_of({"/etc/passwd": "x"})
    assert len(docker_backend._tar_of({"a/b.py": "x", "c.py": "y"})) >= 512 * 4


def test_hostile_cases_are_valid_programs() -> None:
    """Every attack must parse, or the suite would 'contain' syntax errors and prove
    nothing. Formatting with planted values also catches unescaped braces."""
    import ast
    import shutil

    from tasks.sandbox.hostile import HOSTILE_CASES, planted, program_for
    from tasks.sandbox.verify import php_lint_host

    assert len({c.name for c in HOSTILE_CASES}) == len(HOSTILE_CASES)
    with planted() as plant:
        for case in HOSTILE_CASES:
            files, command = program_for(case, plant)
            [source] = files.values()
            if case.language == "python":
                ast.parse(source)
            elif shutil.which("php"):
                assert php_lint_host(source) is None, case.name
            assert command[-1] in files
