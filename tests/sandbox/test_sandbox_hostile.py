"""The hostile suite (tasks/sandbox/hostile.py) on every backend: each attack must be
contained, reported with the expected stage and reason, and leave the host unaffected."""

from __future__ import annotations

import os
import sys

import pytest

from tasks.sandbox.base import Sandbox
from tasks.sandbox.hostile import (
    HOSTILE_CASES,
    SUITE_LIMITS,
    CaseResult,
    HostileCase,
    format_matrix,
    format_table,
    planted,
    run_case,
)

pytestmark = pytest.mark.slow

_results: list[CaseResult] = []


@pytest.mark.parametrize("case", HOSTILE_CASES, ids=lambda c: c.name.replace(" ", "-"))
def test_hostile_case_is_contained(any_sandbox: Sandbox, case: HostileCase) -> None:
    parent = os.getpid()
    with planted() as plant:
        result = run_case(any_sandbox, case, plant, SUITE_LIMITS)
        # The secret really was in this process's environment while the code ran.
        assert os.environ[plant.secret_name] == plant.secret_value
    _results.append(result)
    assert result.ok, f"{case.name} on {any_sandbox.name}: {result.problems} ({result.verdict})"
    assert not result.verdict.passed or case.passed
    assert os.getpid() == parent  # the test process survived whatever the code did


def test_hostile_table_counts(request: pytest.FixtureRequest) -> None:
    """Print the table of everything that ran above (``-s`` to see it)."""
    if not _results:
        pytest.skip("no hostile case ran in this session (deselected)")
    table = format_table(_results)
    matrix = format_matrix(_results)
    sys.stdout.write("\n" + table + "\n\n" + matrix + "\n")
    for backend in {r.backend for r in _results}:
        assert f"{backend}: " in table
    assert all(r.ok for r in _results), table
    # The case x backend matrix: every case that ran, contained on every backend.
    backends = sorted({r.backend for r in _results})
    rows = {line.split("  ")[0]: line.split() for line in matrix.splitlines()}
    for case in {r.case for r in _results}:
        assert rows[case][-len(backends) :] == ["contained"] * len(backends), matrix
