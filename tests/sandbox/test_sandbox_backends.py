"""Behaviour every backend shares: files in, command run, verdict out."""

from __future__ import annotations

import time

import pytest

from tasks.sandbox.base import Limits, Sandbox

pytestmark = pytest.mark.slow

FAST = Limits(cpu_s=2, wall_s=5, memory_mb=256, processes=16, output_bytes=50_000, tmp_mb=8)


def test_runs_files_and_reports_output(any_sandbox: Sandbox) -> None:
    files = {"main.py": "import helper\nprint(helper.VALUE * 2)\n", "pkg/helper.py": "x = 1\n"}
    files["helper.py"] = "VALUE = 21\n"
    verdict = any_sandbox.run(files, ["python3", "main.py"], FAST)
    assert verdict.passed, verdict
    assert verdict.stage == "execute"
    assert verdict.exit_code == 0
    assert verdict.stdout.strip() == "42"
    assert verdict.backend == any_sandbox.name
    assert 0 < verdict.duration_s < FAST.wall_s


def test_failure_reason_is_last_error_line(any_sandbox: Sandbox) -> None:
    code = "def f(x):\n    return x + 1\n\nassert f(1) == 3, 'f(1) should be 3'\n"
    verdict = any_sandbox.run({"main.py": code}, ["python3", "main.py"], FAST)
    assert not verdict.passed
    assert verdict.stage == "execute"
    assert verdict.exit_code == 1
    assert verdict.reason.startswith("AssertionError: f(1) should be 3")
    assert "Traceback" in verdict.stderr


def test_runs_as_nobody_in_work_dir_with_clean_env(any_sandbox: Sandbox) -> None:
    code = (
        "import os\nprint(os.getuid(), os.getgid(), os.getcwd())\n"
        "print(sorted(os.environ))\nopen('scratch.txt', 'w').write('ok')\n"
        "print(open('scratch.txt').read())\n"
    )
    verdict = any_sandbox.run({"main.py": code}, ["python3", "main.py"], FAST)
    assert verdict.passed, verdict
    ids, env, scratch = verdict.stdout.strip().splitlines()
    assert ids == "65534 65534 /work"
    assert scratch == "ok"
    assert "PATH" in env and "WINNOW" not in env


def test_root_is_read_only(any_sandbox: Sandbox) -> None:
    code = "open('/usr/bin/evil', 'w')\n"
    verdict = any_sandbox.run({"main.py": code}, ["python3", "main.py"], FAST)
    assert not verdict.passed
    assert "Read-only file system" in verdict.reason or "Permission denied" in verdict.reason


def test_php_runs(any_sandbox: Sandbox) -> None:
    code = "<?php\necho strrev('olleh'), PHP_EOL;\n"
    verdict = any_sandbox.run({"main.php": code}, ["php", "main.php"], FAST)
    assert verdict.passed, verdict
    assert verdict.stdout.strip() == "hello"


def test_bad_file_name_is_refused(any_sandbox: Sandbox) -> None:
    with pytest.raises(ValueError):
        any_sandbox.run({"../escape.py": "x"}, ["python3", "-c", "pass"], FAST)


def test_standard_library_is_complete(any_sandbox: Sandbox) -> None:
    """Generated tests use unittest, json, dataclasses...: every backend must have them."""
    modules = "unittest json dataclasses decimal fractions statistics asyncio difflib uuid"
    code = f"import {', '.join(modules.split())}\nprint('ok')\n"
    verdict = any_sandbox.run({"main.py": code}, ["python3", "main.py"], FAST)
    assert verdict.passed, verdict.reason


def test_fork_bomb_does_not_starve_a_concurrent_run(any_sandbox: Sandbox) -> None:
    """Runs go in parallel (verify_cases uses threads): one run's process limit must not be
    shared with its neighbour's, as it would be if RLIMIT_NPROC counted every uid-65534
    process on the host."""
    from concurrent.futures import ThreadPoolExecutor

    bomb = "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n"
    bomb += "        time.sleep(0.01)\n"
    good = "import time, subprocess\ntime.sleep(0.5)\nsubprocess.run(['true'], check=True)\n"
    good += "print('fine')\n"
    with ThreadPoolExecutor(2) as pool:
        bombed = pool.submit(any_sandbox.run, {"main.py": bomb}, ["python3", "main.py"], FAST)
        time.sleep(0.2)
        fine = pool.submit(any_sandbox.run, {"main.py": good}, ["python3", "main.py"], FAST)
        assert fine.result().passed, fine.result()
        assert bombed.result().stage == "timeout"
