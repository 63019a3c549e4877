"""Dual agreement on crafted candidates of one problem, ``add(a, b)``: two right
solutions with right tests, one right solution whose test expects a wrong value, and a
wrong solution with tests written to match it (which it passes)."""

from __future__ import annotations

import pytest

from tasks.execution.agreement import (
    CaseBlock,
    cross_run,
    decide,
    read_passes,
    revised_tests_problem,
    split_tests,
)
from tasks.sandbox.base import Limits, Sandbox

RIGHT = "def add(a, b):\n    return a + b\n"
WRONG = "def add(a, b):\n    return a - b\n"
SOLUTIONS = [RIGHT, RIGHT, RIGHT, WRONG]
TESTS = [
    "assert add(1, 2) == 3\nassert add(0, 0) == 0\n",
    "assert add(2, 2) == 5\nassert add(5, 1) == 6\n",  # its first case is wrong
    "import math\nassert add(-1, 1) == 0\nassert math.isclose(add(0.5, 0.25), 0.75)\n",
    "assert add(3, 1) == 2\nassert add(5, 5) == 0\n",  # matches the wrong solution
]
LIMITS = Limits(cpu_s=2, wall_s=5, memory_mb=256, processes=16, output_bytes=50_000, tmp_mb=8)


def test_tests_split_into_setup_and_cases() -> None:
    block = split_tests("import math\nX = 2\ndef helper():\n    return 1\nassert helper() == 1\n"
                        "for i in range(3):\n    assert i < 3\ncheck(helper)\n")  # fmt: skip
    assert block.setup == "import math\nX = 2\ndef helper():\n    return 1"
    assert len(block.cases) == 3 and block.cases[0] == "assert helper() == 1"
    assert split_tests("assert (").cases == ()


def test_a_run_that_printed_nothing_failed_every_case() -> None:
    blocks = [CaseBlock("", ("a", "b")), CaseBlock("", ("c",))]
    assert read_passes("noise\n@@winnow-agreement [[1, 0], [1]]\n", blocks) == [[1, 0], [1]]
    assert read_passes("Traceback ...", blocks) == [[0, 0], [0]]
    assert read_passes("@@winnow-agreement [[1]]", blocks) == [[0, 0], [0]]  # wrong shape


def by_hand() -> list[set[tuple[int, int]]]:
    """What each solution passes (worked out by hand for SOLUTIONS x TESTS)."""
    right = {(0, 0), (0, 1), (1, 1), (2, 0), (2, 1)}
    wrong = {(0, 1), (3, 0), (3, 1)}  # 0 - 0 == 0; 3 - 1 == 2; 5 - 5 == 0
    return [right, set(right), set(right), wrong]


def check_decisions(agreement) -> None:
    assert agreement.consensus == [0, 1, 2] and agreement.decided
    assert agreement.agreed == by_hand()[0]
    # candidate 1's wrong expectation is the suspect, not its code
    assert agreement.suspect_cases(1) == ["assert add(2, 2) == 5"]
    assert agreement.suspect_cases(0) == []
    # the wrong solution passes its own tests; the others' agreed cases catch it
    others = agreement.agreed_from_others(3)
    assert "assert add(1, 2) == 3" in others and "assert add(5, 1) == 6" in others
    assert not any("math" in case for case in others)  # needs its block's import
    assert set(agreement.suspect_cases(3)) == {"assert add(3, 1) == 2", "assert add(5, 5) == 0"}
    evidence = agreement.evidence(3)
    assert "fails these test cases that the agreeing solutions pass" in evidence
    assert "assert add(1, 2) == 3" in evidence
    assert "more likely wrong than the code" in agreement.evidence(1)
    assert "one of the agreeing ones" in agreement.evidence(1)


def test_the_consensus_on_a_crafted_matrix() -> None:
    blocks = [split_tests(t) for t in TESTS]
    check_decisions(decide(by_hand(), blocks))


def test_no_consensus_without_two_agreeing_solutions() -> None:
    blocks = [split_tests(t) for t in TESTS[:2]]
    alone = decide([{(0, 0)}, {(1, 1)}], blocks)
    assert not alone.decided and alone.evidence(0) == "" and alone.agreed_from_others(0) == []


def test_with_no_consensus_solutions_that_contradict_each_other_are_disputed() -> None:
    # 0: right code, right test; 1: wrong code, a test matching it; 2: crashes on import
    blocks = [split_tests(t) for t in (TESTS[0], TESTS[3], "assert add(9, 1) == 10\n")]
    found = decide([{(0, 0), (0, 1), (2, 0)}, {(0, 1), (1, 0), (1, 1)}, set()], blocks)
    assert not found.decided
    assert found.disputed_cases(0) == ["assert add(3, 1) == 2", "assert add(5, 5) == 0"]
    assert found.disputed_cases(1) == ["assert add(1, 2) == 3", "assert add(9, 1) == 10"]
    assert found.disputed_cases(2) != []  # fails what the others pass
    # a solution that passes every case any other passes contradicts no one
    alone = decide([{(0, 0), (0, 1), (1, 1)}, {(1, 1)}], blocks[:2])
    assert not alone.decided and alone.disputed_cases(0) == []
    assert alone.disputed_cases(1) == ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]
    # a consensus settles it: no disputes, the agreed cases do the work
    assert decide(by_hand(), [split_tests(t) for t in TESTS]).disputed_cases(3) == []


@pytest.mark.slow
def test_cross_run_in_the_sandbox_decides_as_worked_out(bwrap_sandbox: Sandbox) -> None:
    agreement = cross_run(SOLUTIONS, TESTS, bwrap_sandbox, LIMITS)
    assert agreement.passes == by_hand()
    check_decisions(agreement)
    # a solution that hangs or exits early fails every case, and the others still decide
    hostile = ["import sys\nsys.exit(0)\n", "while True:\n    pass\n"]
    quick = LIMITS.model_copy(update={"wall_s": 2.0, "cpu_s": 1.0})
    agreement = cross_run([*SOLUTIONS[:2], *hostile], TESTS[:2], bwrap_sandbox, quick)
    assert agreement.passes[2:] == [set(), set()] and agreement.consensus == [0, 1]


@pytest.mark.slow
def test_a_revised_test_must_still_test(bwrap_sandbox: Sandbox) -> None:
    before = TESTS[1]
    consensus = [RIGHT, RIGHT]
    fixed = "assert add(2, 2) == 4\nassert add(5, 1) == 6\n"
    assert revised_tests_problem(before, fixed, consensus, bwrap_sandbox, LIMITS) is None
    weaker = "assert add(5, 1) == 6\n"
    assert revised_tests_problem(before, weaker, consensus, bwrap_sandbox, LIMITS) == (
        "revised tests are weaker: 1 cases where there were 2"
    )
    still_wrong = "assert add(2, 2) == 7\nassert add(5, 1) == 6\n"
    assert revised_tests_problem(before, still_wrong, consensus, bwrap_sandbox, LIMITS) == (
        "revised test fails on the agreeing solutions: assert add(2, 2) == 7"
    )
