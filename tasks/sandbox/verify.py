"""Verify generated solutions against their tests, in a sandbox.

A case is a solution and its tests in one language. The solution and the tests are joined
into one program and run in the sandbox; the case passes when that program exits 0.
Cheap checks run first on the host, never executing anything: Python is parsed with
``ast.parse`` and linted with ruff, PHP is checked with ``php -l`` (in the sandbox when the
host has no ``php``).

Plain code, no Prefect: flows call :func:`verify_cases` on a batch.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from tasks.sandbox.base import Limits, Sandbox, Stage, Verdict

Language = Literal["python", "php"]

# Pyflakes (undefined names, unused imports, ...) and syntax errors: findings that point at
# real defects in generated code, not style.
RUFF_RULES = "E9,F"
PHP_FLAGS = (
    "-d", "display_errors=stderr",
    "-d", "log_errors=0",
    # Debian's php.ini compiles assert() out (zend.assertions=-1): tests would pass blindly.
    "-d", "zend.assertions=1",
    "-d", "assert.exception=1",
)  # fmt: skip


class Case(BaseModel):
    id: str
    solution: str
    tests: str


class CaseVerdict(BaseModel):
    id: str
    passed: bool
    stage: Stage
    reason: str = ""
    lint: list[str] = Field(default_factory=list)  # ruff findings, "F401 line 1: ..."
    exit_code: int | None = None
    duration_s: float = 0.0
    backend: str = ""
    stderr: str = ""  # the run's last STDERR_TAIL characters, for revision prompts


STDERR_TAIL = 1500


# --- Python -------------------------------------------------------------------------------


def python_program(case: Case) -> str:
    return f"{case.solution}\n\n{case.tests}\n"


def python_parse_error(source: str) -> str | None:
    """Why ``source`` is not valid Python, or None. Parses only: nothing is executed."""
    try:
        ast.parse(source, filename="main.py")
    except SyntaxError as exc:
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes, absurd nesting
        return f"{type(exc).__name__}: {exc}"[:300]
    return None


def _ruff() -> list[str] | None:
    local = Path(sys.executable).with_name("ruff")
    if local.exists():
        return [str(local)]
    found = shutil.which("ruff")
    return [found] if found else None


def ruff_findings(sources: list[str], timeout: float = 60.0) -> list[list[str]]:
    """Ruff findings for each source, in one ruff process for the whole batch.

    Returns one (possibly empty) list per source; empty lists when ruff is not installed.
    """
    ruff = _ruff()
    if ruff is None or not sources:
        return [[] for _ in sources]
    with tempfile.TemporaryDirectory(prefix="winnow-lint-") as tmp:
        for i, src in enumerate(sources):
            Path(tmp, f"case_{i}.py").write_text(src, encoding="utf-8")
        argv = [
            *ruff,
            "check",
            "--no-cache",
            "--isolated",
            "--output-format=json",
            f"--select={RUFF_RULES}",
            "--target-version=py311",
            tmp,
        ]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
            items = json.loads(proc.stdout or "[]")
        except (subprocess.TimeoutExpired, OSError, json.JSONDecodeError):
            # Lint is advisory unless strict: a broken or stuck ruff must not stop the batch.
            return [[] for _ in sources]
    out: list[list[str]] = [[] for _ in sources]
    for item in items:
        match = re.search(r"case_(\d+)\.py$", item.get("filename", ""))
        if not match:
            continue
        line = (item.get("location") or {}).get("row")
        out[int(match.group(1))].append(f"{item.get('code')} line {line}: {item.get('message')}")
    return out


# --- PHP ----------------------------------------------------------------------------------

_OPEN_TAG = re.compile(r"^\s*<\?php\b", re.IGNORECASE)
_CLOSE_TAG = re.compile(r"\?>\s*$")


def php_program(case: Case) -> str:
    """Solution then tests as one PHP file: one opening tag, no closing tag in between."""
    solution = case.solution
    if not _OPEN_TAG.match(solution):
        solution = "<?php\n" + solution
    solution = _CLOSE_TAG.sub("", solution)
    tests = _OPEN_TAG.sub("", case.tests, count=1)
    return f"{solution}\n\n{tests}\n"


def php_lint_host(source: str, timeout: float = 10.0) -> str | None:
    """``php -l`` on the host (parses, never runs). None when valid."""
    with tempfile.NamedTemporaryFile("w", suffix=".php", encoding="utf-8") as f:
        f.write(source)
        f.flush()
        try:
            proc = subprocess.run(
                ["php", "-n", "-d", "display_errors=stderr", "-l", f.name],
                capture_output=True,
                text=True,
                timeout=timeout,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            )
        except subprocess.TimeoutExpired:
            return f"php -l took longer than {timeout:g}s"
    if proc.returncode == 0:
        return None
    return _php_lint_reason(proc.stderr + proc.stdout, f.name)


def _php_lint_reason(output: str, path: str) -> str:
    for line in output.splitlines():
        if "error" in line.lower():
            line = line.replace(path, "main.php").removeprefix("PHP ").strip()
            return re.sub(r"\s+", " ", line)
    return "php -l failed"


# --- running ------------------------------------------------------------------------------


def _lint_summary(lint: list[str]) -> str:
    return f"lint: {lint[0]}" + (f" (+{len(lint) - 1} more)" if len(lint) > 1 else "")


def _from_verdict(case_id: str, verdict: Verdict, lint: list[str]) -> CaseVerdict:
    reason = verdict.reason
    if verdict.passed and lint:
        reason = _lint_summary(lint)  # passed, but say what ruff found
    return CaseVerdict(
        id=case_id,
        passed=verdict.passed,
        stage=verdict.stage,
        reason=reason,
        lint=lint,
        exit_code=verdict.exit_code,
        duration_s=verdict.duration_s,
        backend=verdict.backend,
        stderr=verdict.stderr[-STDERR_TAIL:],
    )


def verify_python(
    case: Case, sandbox: Sandbox, lint: list[str], strict_lint: bool, limits: Limits
) -> CaseVerdict:
    program = python_program(case)
    error = python_parse_error(program)
    if error:
        return CaseVerdict(
            id=case.id, passed=False, stage="parse", reason=error, lint=lint, backend=sandbox.name
        )
    if strict_lint and lint:
        return CaseVerdict(
            id=case.id, passed=False, stage="compile", reason=_lint_summary(lint), lint=lint
        )
    verdict = sandbox.run({"main.py": program}, ["python3", "-B", "main.py"], limits)
    return _from_verdict(case.id, verdict, lint)


def verify_php(case: Case, sandbox: Sandbox, limits: Limits) -> CaseVerdict:
    program = php_program(case)
    if shutil.which("php"):
        error = php_lint_host(program)
    else:
        lint = sandbox.run({"main.php": program}, ["php", "-l", "main.php"], limits)
        error = None if lint.passed else _php_lint_reason(lint.stderr + lint.stdout, "main.php")
        if lint.stage in ("timeout", "limit"):
            return _from_verdict(case.id, lint, [])
    if error:
        return CaseVerdict(
            id=case.id, passed=False, stage="parse", reason=error, backend=sandbox.name
        )
    memory = f"memory_limit={max(16, limits.memory_mb - 32)}M"
    command = ["php", *PHP_FLAGS, "-d", memory, "main.php"]
    verdict = sandbox.run({"main.php": program}, command, limits)
    return _from_verdict(case.id, verdict, [])


def verify_cases(
    cases: list[Case],
    language: Language,
    sandbox: Sandbox,
    strict_lint: bool = False,
    limits: Limits | None = None,
    workers: int | None = None,
) -> list[CaseVerdict]:
    """Verify ``cases`` in parallel (threads; each run is its own process) and return the
    verdicts in input order. Lint findings are reported always, fail only ``strict_lint``."""
    limits = limits or Limits()
    workers = workers or max(1, os.cpu_count() or 1)
    if language == "python":
        lints = ruff_findings([python_program(c) for c in cases])

        def one(i: int) -> CaseVerdict:
            return verify_python(cases[i], sandbox, lints[i], strict_lint, limits)

    elif language == "php":

        def one(i: int) -> CaseVerdict:
            return verify_php(cases[i], sandbox, limits)

    else:
        raise ValueError(f"unsupported language {language!r}: python or php")
    if workers == 1 or len(cases) <= 1:
        return [one(i) for i in range(len(cases))]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, range(len(cases))))
