"""The math word-problem recipe end to end against the test LLM server, through its
scripted scenario (winnow/testing/scenarios/math_word_problems.py): kept, wrong stated
answer, crashing program, malformed JSON, no solve(), ill-posed, duplicate; then a re-run
that sends no request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.recipes.math_word_problems.answers import parse_number, same_answer
from tasks.recipes.math_word_problems.recipe import MathParams
from tasks.recipes.math_word_problems.stages import _defines
from winnow.testing.llm_server import LLMTestServer
from winnow.testing.scenarios.math_word_problems import SCENARIO


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def server():
    with LLMTestServer(SCENARIO.script()) as s:
        yield s


@pytest.mark.slow
def test_every_path_ends_where_it_should(tmp_path, server, prefect_harness) -> None:
    from flows.math_word_problems import math_word_problems

    p = MathParams(**SCENARIO.params(tmp_path, server.base_url))
    summary = math_word_problems(p)
    out = Path(p.out)

    kept = read_jsonl(out / "dataset.jsonl")
    assert sorted(r["metadata"]["topic"] for r in kept) == ["alpha", "theta"]
    alpha = next(r for r in kept if r["metadata"]["topic"] == "alpha")
    user, assistant = alpha["messages"]
    assert user == {"role": "user", "content": alpha["messages"][0]["content"]}
    assert user["content"].startswith("[alpha] A shop sells")
    assert assistant["role"] == "assistant" and assistant["content"].endswith("Answer: 12")
    meta = alpha["metadata"]
    assert meta["computed_answer"] == "12" and meta["stated_answer"] == "12"
    assert "def solve()" in meta["program"]
    assert meta["judge"]["well_posed"] == "yes"
    assert meta["provenance"]["template"] == "math_word_problems/problem"
    assert meta["sandbox"] == "bwrap"
    assert meta["source_id"].startswith("seed-")  # the seed row it was written from
    theta = next(r for r in kept if r["metadata"]["topic"] == "theta")
    assert theta["metadata"]["computed_answer"] == "12"  # Fraction(36, 3) == "12.0"

    rejected = read_jsonl(out / "rejected.jsonl")
    reasons = {(r["stage"], r["record"]["topic"]): r for r in rejected}
    assert set(reasons) == {
        ("problems", "delta"),
        ("unique_problems", "eta"),  # eta's seed wrote alpha's problem again
        ("static", "zeta"),
        ("execute", "beta"),
        ("execute", "gamma"),
        ("coherent", "iota"),
        ("judge", "epsilon"),
    }
    assert reasons[("problems", "delta")]["reason"].startswith("malformed model answer")
    assert reasons[("problems", "delta")]["detail"]["raw"] == "Sure! The answer is 12 pens."
    assert reasons[("unique_problems", "eta")]["reason"].startswith("duplicate of m-")
    assert reasons[("static", "zeta")]["reason"] == "program defines no solve() to call"
    assert reasons[("execute", "beta")]["reason"] == "computed 12 but stated 13"
    crash = reasons[("execute", "gamma")]
    assert crash["reason"].startswith("program crashed: ZeroDivisionError")
    assert crash["detail"]["exit_code"] != 0
    assert reasons[("coherent", "iota")]["reason"] == (
        "incoherent: the worked solution never reaches the stated answer 12"
    )
    assert "not well-posed: the price is never given" in reasons[("judge", "epsilon")]["reason"]
    assert all(r["id"] and r["stage"] and r["reason"] for r in rejected)

    funnel = json.loads((out / "funnel.json").read_text())
    stages = {s["stage"]: (s["n_in"], s["n_out"], s["n_rejected"]) for s in funnel["stages"]}
    assert stages == SCENARIO.funnel
    assert funnel["kept"] == summary["kept"] == SCENARIO.kept
    assert {g["suite"]: g["success"] for g in funnel["gates"]} == {
        "math_word_problems.problems": True,
        "math_word_problems.executed": True,
        "math_word_problems.kept": True,
    }
    # 9 problems + 2 re-asks of the malformed one + 3 judge calls
    assert server.stats.chat_requests == funnel["llm_calls"] == 9 + 2 + 3

    before = server.stats.chat_requests
    again = math_word_problems(p)
    assert server.stats.chat_requests == before  # a re-run sends nothing
    assert again["llm_calls_from_journal"] == again["llm_calls"]
    assert all(s["reused"] for s in again["stages"])
    assert read_jsonl(out / "dataset.jsonl") == kept


@pytest.mark.slow
def test_without_the_judge_the_ill_posed_problem_is_kept(tmp_path, server, prefect_harness) -> None:
    from flows.math_word_problems import math_word_problems

    p = MathParams(**{**SCENARIO.params(tmp_path, server.base_url), "well_posed_judge": False})
    summary = math_word_problems(p)
    assert [s["stage"] for s in summary["stages"]][-1] == "coherent"
    topics = sorted(r["metadata"]["topic"] for r in read_jsonl(Path(p.out) / "dataset.jsonl"))
    assert topics == ["alpha", "epsilon", "theta"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("12", 12.0), ("3/4", 0.75), ("$1,250.50", 1250.5), ("15%", 15.0), (" -2.5e3 ", -2500.0),
        (7, 7.0), (0.5, 0.5), ("12 apples", None), ("1/0", None), (True, None), ("", None),
        ("1,2", None), (float("nan"), None),
    ],
)  # fmt: skip
def test_answers_are_read_as_numbers(text, value) -> None:
    assert parse_number(text) == value


def test_answers_compare_within_the_tolerance() -> None:
    assert same_answer(0.1 + 0.2, 0.3, 1e-6)
    assert same_answer(1 / 3, 0.333333333, 1e-6)
    assert not same_answer(12.0, 13.0, 1e-6)
    assert same_answer(0.0, 1e-9, 1e-6)


@pytest.mark.parametrize(
    ("source", "ok"),
    [
        ("def solve():\n    return 1\n", True),
        ("def solve(x=2, *, y=3):\n    return x\n", True),
        ("def solve(x):\n    return x\n", False),
        ("def other():\n    return 1\n", False),
        ("class A:\n    def solve(self):\n        return 1\n", False),
    ],
)
def test_the_program_must_define_solve_without_arguments(source, ok) -> None:
    assert _defines(source, "solve") is ok


def _ctx():
    from tasks.pipeline.stage import RunInfo, StageContext

    return StageContext(run=RunInfo(run_id="r", recipe="math-word-problems"), stage="execute")


@pytest.mark.slow
def test_execution_outcomes_on_plain_rows() -> None:
    """The execute stage without Prefect: a match, a loop stopped by the wall clock, a
    program that prints its answer instead of returning it, a non-number, a tolerance."""
    from tasks.recipes.math_word_problems.stages import ExecuteConfig, execute_batch
    from tasks.sandbox.base import Limits

    def row(tag: str, program: str, stated: float) -> dict:
        return {"id": tag, "program": program, "stated_answer": str(stated), "stated_value": stated}

    rows = [
        row("third", "def solve():\n    return 1 / 3\n", 0.3333333),
        row("loop", "def solve():\n    while True:\n        pass\n", 1),
        row("printer", "def solve():\n    print(12)\n", 12),
        row("text", "def solve():\n    return 'twelve'\n", 12),
    ]
    config = ExecuteConfig(sandbox="bwrap", limits=Limits(wall_s=2, cpu_s=2), tolerance=1e-6)
    result = execute_batch(rows, config, _ctx())
    assert [r["id"] for r in result.kept] == ["third"]
    assert result.kept[0]["computed_answer"] == pytest.approx(1 / 3)
    reasons = {r["record_id"]: r["reason"] for r in result.rejected}
    assert reasons["loop"].startswith("program timed out")
    assert reasons["printer"] == "computed answer is not a number: None"
    assert reasons["text"] == "computed answer is not a number: 'twelve'"


def solved(tag: str, answer: int) -> str:
    return json.dumps(
        {
            "solution": f"[{tag}] Three boxes of four pens make 3 × 4 = {answer} pens.",
            "program": f"def solve():\n    return {answer}\n",
            "answer": answer,
        }
    )


@pytest.mark.slow
def test_your_own_problems_are_solved_and_checked_against_their_answers(
    tmp_path, prefect_harness
) -> None:
    """A CSV of problems with GSM8K-style reference answers: the model solves each (no
    problem is generated), and a computed answer must match the reference too."""
    import csv

    from flows.math_word_problems import math_word_problems
    from winnow.testing.llm_server import Rule, Script

    problems = tmp_path / "problems.csv"
    with problems.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "question", "answer"])
        writer.writeheader()
        for tag, reference in (("q1", 12), ("q2", 13)):
            question = f"[{tag}] A shop sells 3 boxes of 4 pens each. How many pens is that?"
            writer.writerow({"id": tag, "question": question, "answer": f"3*4\n#### {reference}"})
    script = Script(
        rules=[
            Rule(pattern=r"Problem: \[q1\]", replies=[solved("q1", 12)]),
            Rule(pattern=r"Problem: \[q2\]", replies=[solved("q2", 12)]),
        ]
    )
    with LLMTestServer(script) as server:
        params = MathParams(
            out=str(tmp_path / "out"),
            provider="openai-compatible",
            model="test-model",
            base_url=server.base_url,
            problems=str(problems),
            problem_field="question",
            answer_field="answer",
            well_posed_judge=False,
            sandbox="bwrap",
        )
        math_word_problems(params)
        assert server.stats.chat_requests == 2  # one solution each, nothing generated
    [kept] = read_jsonl(tmp_path / "out" / "dataset.jsonl")
    assert kept["metadata"]["source_id"] == "q1" and kept["metadata"]["passed_reference_answer"]
    assert kept["messages"][0]["content"].startswith("[q1] A shop sells")
    [wrong] = read_jsonl(tmp_path / "out" / "rejected.jsonl")
    assert wrong["stage"] == "execute" and wrong["record"]["source_id"] == "q2"
    assert wrong["reason"] == "computed 12 but the reference answer is 13"


def test_your_own_problems_are_read_with_their_reference_answers(tmp_path) -> None:
    from tasks.core.jsonl import InputError
    from tasks.recipes.math_word_problems.inputs import check_problems, problem_rows

    path = tmp_path / "gsm.jsonl"
    rows = [
        {"question": "Janet has 16 eggs and eats 3. How many are left?", "answer": "16-3\n#### 13"},
        {"question": "A robe takes 2 bolts and half that much more. How many?", "answer": 3},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    read = list(problem_rows(str(path), "question", "answer"))
    assert [r["reference_answer"] for r in read] == ["13", "3"]
    assert [r["source_id"] for r in read] == ["1", "2"] and read[0]["id"].startswith("m-")
    assert check_problems(str(path), "question", None) == 2
    with pytest.raises(InputError, match="no field 'solution'"):
        check_problems(str(path), "question", "solution")
