"""tasks/sandbox/verify.py: host-side checks (fast) and real runs on every backend (slow)."""

from __future__ import annotations

import pytest

from tasks.sandbox.base import Limits, Sandbox
from tasks.sandbox.verify import (
    Case,
    php_program,
    python_parse_error,
    ruff_findings,
    verify_cases,
)

LIMITS = Limits(cpu_s=2, wall_s=5, memory_mb=256, processes=16, output_bytes=50_000, tmp_mb=8)

ADD = "def add(a, b):\n    return a + b\n"
PY_CASES = [
    Case(id="ok", solution=ADD, tests="assert add(1, 2) == 3\n"),
    Case(id="wrong", solution="def add(a, b):\n    return a - b\n", tests="assert add(1, 2) == 3"),
    Case(id="syntax", solution="def add(a, b)\n    return a + b\n", tests="assert add(1, 2) == 3"),
    Case(id="lint", solution="import os\n" + ADD, tests="assert add(2, 2) == 4\n"),
    Case(id="raises", solution=ADD, tests="raise ValueError('bad input')\n"),
    Case(id="loop", solution="def add(a, b):\n    while True:\n        pass\n", tests="add(1, 2)"),
]

PHP_ADD = "<?php\nfunction add($a, $b) { return $a + $b; }\n"
PHP_TEST = "<?php\nassert(add(1, 2) === 3);\n"
PHP_CASES = [
    Case(id="ok", solution=PHP_ADD, tests=PHP_TEST),
    Case(id="no-tags", solution=PHP_ADD.removeprefix("<?php\n"), tests=PHP_TEST[6:]),
    Case(id="wrong", solution=PHP_ADD.replace("+", "-"), tests=PHP_TEST),
    Case(id="syntax", solution="<?php\nfunction add($a, $b) { return $a + $b }\n", tests="<?php\n"),
    Case(id="closing-tag", solution=PHP_ADD + "?>\n", tests=PHP_TEST + "echo 'done';"),
    Case(id="exception", solution=PHP_ADD, tests="<?php\nthrow new RuntimeException('nope');"),
]


# --- fast: nothing runs -------------------------------------------------------------------


def test_python_parse_error_is_readable() -> None:
    assert python_parse_error(ADD) is None
    assert python_parse_error("def f(:\n").startswith("SyntaxError:")  # type: ignore[union-attr]
    assert "null" in (python_parse_error("x = 1\x00") or "").lower()
    deep = "x = " + "(" * 1000 + ")" * 1000
    assert python_parse_error(deep) is not None


def test_ruff_findings_in_one_batch() -> None:
    found = ruff_findings(["import os\n", "print(undefined_name)\n", "x = 1\n"])
    assert [f[0].split()[0] for f in found[:2]] == ["F401", "F821"]
    assert found[2] == []


def test_php_program_handles_tags() -> None:
    prog = php_program(Case(id="x", solution="function f() {}", tests="<?php\nf();"))
    assert prog.startswith("<?php\n")
    assert prog.count("<?php") == 1
    prog = php_program(Case(id="x", solution="<?php\nfunction f() {}\n?>\n", tests="<?php f();"))
    assert "?>" not in prog and prog.count("<?php") == 1


# --- slow: real runs in the sandbox -------------------------------------------------------


@pytest.mark.slow
def test_verify_python_cases(any_sandbox: Sandbox) -> None:
    verdicts = verify_cases(PY_CASES, "python", any_sandbox, limits=LIMITS, workers=2)
    got = {v.id: v for v in verdicts}
    assert [v.id for v in verdicts] == [c.id for c in PY_CASES]  # input order
    assert got["ok"].passed and got["ok"].stage == "execute" and got["ok"].reason == ""
    assert not got["wrong"].passed and got["wrong"].stage == "execute"
    assert got["wrong"].reason.startswith("AssertionError: assert add(1, 2) == 3")
    assert "Traceback" in got["wrong"].stderr  # the tail, for revision prompts
    assert (got["syntax"].passed, got["syntax"].stage) == (False, "parse")
    assert got["syntax"].reason.startswith("SyntaxError: expected ':'")
    assert got["lint"].passed and "F401" in got["lint"].reason
    assert got["raises"].reason.startswith("ValueError: bad input")
    assert (got["loop"].passed, got["loop"].stage) == (False, "timeout")


@pytest.mark.slow
def test_strict_lint_fails_lint_findings(bwrap_sandbox: Sandbox) -> None:
    [v] = verify_cases([PY_CASES[3]], "python", bwrap_sandbox, strict_lint=True, limits=LIMITS)
    assert (v.passed, v.stage) == (False, "compile")
    assert v.reason.startswith("lint: F401")


@pytest.mark.slow
def test_verify_php_cases(any_sandbox: Sandbox) -> None:
    verdicts = verify_cases(PHP_CASES, "php", any_sandbox, limits=LIMITS, workers=2)
    got = {v.id: v for v in verdicts}
    assert [v.id for v in verdicts] == [c.id for c in PHP_CASES]
    assert got["ok"].passed and got["no-tags"].passed, (got["ok"], got["no-tags"])
    assert not got["wrong"].passed and "AssertionError" in got["wrong"].reason
    assert (got["syntax"].stage, got["syntax"].passed) == ("parse", False)
    assert "syntax error" in got["syntax"].reason
    assert got["closing-tag"].passed, got["closing-tag"]
    assert "RuntimeException: nope" in got["exception"].reason
    assert got["exception"].exit_code == 255


@pytest.mark.slow
def test_php_lint_inside_sandbox_when_host_has_no_php(
    bwrap_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasks.sandbox.verify as verify_mod

    monkeypatch.setattr(verify_mod.shutil, "which", lambda name: None)
    verdicts = verify_cases(PHP_CASES[2:4], "php", bwrap_sandbox, limits=LIMITS, workers=1)
    assert [(v.stage, v.passed) for v in verdicts] == [("execute", False), ("parse", False)]
    assert "syntax error" in verdicts[1].reason
