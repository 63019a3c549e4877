"""The measuring parts of the benchmarks: busy-time union, child peak memory, and the
scripted code SFT server's answers (they must pass the recipe's real checks, or the
orchestration benchmark would time rejections instead of a full run)."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from _code_sft_server import CodeSFTEngine, topics_file  # noqa: E402
from _common import BusyClock, run_measured  # noqa: E402

from tasks.execution.extract import split_solution_and_tests  # noqa: E402
from tasks.sandbox.verify import Case, python_parse_error, ruff_findings, verify_cases  # noqa: E402
from winnow.testing.llm_server import Script  # noqa: E402


def test_busy_time_is_the_union_of_overlapping_intervals() -> None:
    clock = BusyClock()
    clock.intervals = {
        "llm": [(0.0, 2.0), (1.0, 3.0), (10.0, 11.0)],  # overlap: 3 s + 1 s
        "verify": [(2.5, 4.0), (20.0, 20.5)],
    }
    assert clock.seconds("llm") == pytest.approx(4.0)
    assert clock.seconds("verify") == pytest.approx(2.0)
    assert clock.seconds("llm", "verify") == pytest.approx(5.5)  # 0-4, 10-11, 20-20.5
    assert clock.seconds() == clock.seconds("llm", "verify")


def test_wrapped_calls_from_threads_are_timed() -> None:
    class Worker:
        def work(self, s: float) -> float:
            time.sleep(s)
            return s

    clock = BusyClock()
    clock.wrap(Worker, "work", "llm")
    threads = [threading.Thread(target=Worker().work, args=(0.2,)) for _ in range(3)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    assert clock.count("llm") == 3
    assert 0.2 <= clock.seconds("llm") <= elapsed + 0.01  # concurrent: not 3 x 0.2


def test_peak_memory_of_a_child_process() -> None:
    grow = (
        "import time; x = bytearray(150 * 2**20); x[::4096] = b'1' * len(x[::4096]); "
        "time.sleep(0.5); print('done')"
    )
    r = run_measured([sys.executable, "-c", grow], sample_s=0.05)
    assert r["returncode"] == 0 and r["stdout"].strip() == "done"
    assert r["max_rss_mb"] >= 150
    assert r["tree_peak_mb"] >= 150  # sampled while it slept
    small = run_measured([sys.executable, "-c", "import time; time.sleep(0.5)"], sample_s=0.05)
    assert 0 < small["tree_peak_mb"] < 100


@pytest.mark.slow  # bubblewrap
def test_scripted_code_sft_answers_pass_the_recipe_checks(tmp_path: Path) -> None:
    engine = CodeSFTEngine(Script(), wrong_every=2)
    topics = topics_file(tmp_path / "topics.txt", 4).read_text().splitlines()
    assert topics[3] == "bench topic 00003"
    cases, expected = [], []
    for number, topic in enumerate(topics):
        ask = [{"role": "user", "content": f"Now write a new easy problem about: {topic}."}]
        problem = json.loads(engine.choose(ask, json_mode=True).text)["problem"]
        first = engine.choose([{"role": "user", "content": problem}], json_mode=False).text
        revise = [
            {"role": "system", "content": "fixing code that failed its checks"},
            {"role": "user", "content": problem},
        ]
        fixed = engine.choose(revise, json_mode=False).text
        for text, passes in ((first, number % 2 != 0), (fixed, True)):
            solution = split_solution_and_tests(text)
            assert python_parse_error(solution.solution) is None
            cases.append(Case(id=str(len(cases)), solution=solution.solution, tests=solution.tests))
            expected.append(passes)
    programs = [f"{c.solution}\n\n{c.tests}" for c in cases]  # as the static stage lints
    assert ruff_findings(programs) == [[] for _ in cases]
    judge = engine.choose([{"role": "system", "content": "Grade two things"}], json_mode=True)
    assert json.loads(judge.text)["correctness"] == "pass"

    from tasks.sandbox.bwrap import BwrapSandbox

    verdicts = verify_cases(cases, "python", BwrapSandbox())
    assert [v.passed for v in verdicts] == expected


# HumanEval-style checks, translated to PHP by the PHP precision benchmark.
CHECK = '''
def check(candidate):
    """A docstring is skipped."""
    assert candidate([1.0, 2.0], 0.5) == [1.5, 2.5]
    assert candidate([], 1) == []
    assert abs(candidate([2], 0.25)[0] - 2.25) < 1e-6
    assert candidate([3], 0) == (3,)
    assert not candidate([1], 1) == [1]
    assert True
    for x in range(3):
        assert candidate([x], 0) == [x]
'''


def run_php(source: str) -> int:
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".php") as f:
        f.write(source)
        f.flush()
        return subprocess.run(["php", "-n", f.name], capture_output=True).returncode


def test_humaneval_checks_become_php_checks_that_follow_python_equality() -> None:
    from _php_reference import php_function_name, php_reference_tests

    right = "<?php\nfunction shiftAll(array $xs, float $d): array {\n"
    right += "    return array_map(fn($x) => $x + $d, $xs);\n}\n"
    name = php_function_name(right, "shift_all")
    assert name == "shiftAll"
    tests = php_reference_tests(CHECK, name)
    assert (tests.checks, tests.left_out) == (5, 1)  # the loop is left out, and counted
    assert run_php(right + tests.program) == 0  # 3 == 3.0, a tuple is a list
    wrong = right.replace("$x + $d", "$x - $d")
    assert run_php(wrong + tests.program) == 1
    assert php_function_name("<?php\nfunction a() {}\nfunction b() {}\n", "c") is None
