"""The coherence check on crafted dialogs: the incoherent example the demo once kept, and
coherent ones that must pass."""

from __future__ import annotations

from tasks.curation.coherence import (
    math_dialog_problems,
    numbers_in,
    python_dialog_problems,
    rag_dialog_problems,
    strip_dangling_comments,
)
from tasks.pipeline.stage import RunInfo, StageContext
from tasks.recipes.code_sft.recipe import to_example
from tasks.recipes.code_sft.stages import COHERENT

SOLUTION = '''def reverse_string(s: str) -> str:
    """The characters of s in reverse order."""
    return s[::-1]
'''
TESTS = "assert reverse_string('abc') == 'cba'\nassert reverse_string('') == ''\n"
ASKS_TESTS = (
    "Write a function `reverse_string(s: str) -> str` that reverses a string. "
    "Include a check function with test cases to validate your solution."
)


def test_the_example_the_demo_kept_is_caught() -> None:
    """Tests moved out of the answer, a dangling comment, prose about a check function."""
    code = SOLUTION + "\n# Check function with provided data points\n"
    prose = (
        "The check function tests various cases to ensure the function works correctly, "
        "including edge cases like an empty string."
    )
    problems = python_dialog_problems(ASKS_TESTS, strip_dangling_comments(code), "", prose)
    assert "the request asks for tests and the answer has none" in problems
    assert "the explanation speaks of tests the answer does not contain" in problems
    assert "the explanation describes a check function the answer does not have" in problems


def test_a_dangling_comment_is_cut_and_real_code_kept() -> None:
    code = SOLUTION + "\n\n# Test cases\n# (see below)\n"
    assert strip_dangling_comments(code) == SOLUTION
    plain_tail = SOLUTION + "\n# end of module\n"
    assert strip_dangling_comments(plain_tail) == plain_tail  # announces nothing


def test_names_the_prose_or_request_invent_are_caught() -> None:
    problems = python_dialog_problems(
        "Write `rle(s)` that run-length encodes s.",
        SOLUTION,
        TESTS,
        "It calls `helper` on each run.",
    )
    assert "the request asks for `rle`, which the code does not define" in problems
    assert "the explanation names `helper`, which is not in the code" in problems


def test_a_coherent_dialog_passes() -> None:
    prose = "Slicing with a step of -1 walks `s` backwards; the tests cover `''` too."
    assert python_dialog_problems(ASKS_TESTS, SOLUTION, TESTS, prose) == []
    check = TESTS.replace("assert", "    assert")
    with_check = f"def check() -> None:\n{check}\n\ncheck()\n"
    prose = "The check function `check` runs the test cases, `len` of '' is 0."
    assert python_dialog_problems(ASKS_TESTS, SOLUTION, with_check, prose) == []


def test_the_code_sft_stage_rejects_with_reasons_and_publishes_the_tests() -> None:
    ctx = StageContext(stage="coherent", run=RunInfo(run_id="r", recipe="code-sft"))
    good = {"id": "a", "problem_id": "p", "problem": ASKS_TESTS, "solution": SOLUTION,
            "tests": TESTS, "explanation": ""}  # fmt: skip
    bad = dict(good, id="b", solution=SOLUTION + "# Example usage\n", tests="",
               explanation="The tests show it works.")  # fmt: skip
    out = COHERENT.fn([good, bad], None, ctx)
    assert [r["id"] for r in out.kept] == ["a"]
    (rejected,) = out.rejected
    assert rejected["stage"] == "coherent"
    assert rejected["reason"].startswith("incoherent: the request asks for tests")
    answer = to_example(out.kept[0])["messages"][1]["content"]
    assert "```python\n" + SOLUTION.rstrip() + "\n```" in answer
    assert "Tests:\n\n```python\n" + TESTS.rstrip() + "\n```" in answer


def test_a_request_for_a_check_function_is_dropped_from_a_generated_problem() -> None:
    from tasks.curation.coherence import drop_test_requests

    assert drop_test_requests(ASKS_TESTS) == (
        "Write a function `reverse_string(s: str) -> str` that reverses a string."
    )
    plain = "Write `f(x)` that doubles x. Return 0 for None."
    assert drop_test_requests(plain) == plain


def test_the_php_request_does_not_ask_for_tests_its_answer_leaves_out() -> None:
    from tasks.recipes.php_translation.recipe import php_problem

    asked = php_problem(ASKS_TESTS.replace("a string", "a Python string"))
    assert "check function" not in asked and "test cases" not in asked
    assert asked.endswith("Write the solution in PHP.") and "PHP string" in asked


def test_builtins_library_names_and_names_to_avoid_are_not_held_against_it() -> None:
    request = (
        "Write `reverse_string(s)` without using `reversed()` or `str.join()`; "
        "compare with `other_impl(s)`."
    )
    prose = "Unlike `reversed`, slicing copies; `str.join` is not needed; returns a `str`."
    assert python_dialog_problems(request, SOLUTION, TESTS, prose) == []


def test_math_dialogs_whose_parts_disagree() -> None:
    problem = "A shop sells 3 boxes of 4 pens each. How many pens is that?"
    assert numbers_in("It costs $1,250.50, or 3/4 of 1,667.33; -2 is less.") == [
        1250.5, 0.75, 1667.33, -2.0
    ]  # fmt: skip
    assert math_dialog_problems(problem, "3 × 4 = 12 pens in all.", 12) == []
    assert math_dialog_problems(problem, "Half of 25 is 12.5, so 12.5 kg.", 12.5) == []
    assert math_dialog_problems(problem, "3 × 5 = 15 pens.", 12) == [
        "the worked solution never reaches the stated answer 12"
    ]
    assert math_dialog_problems(problem, "The program returns 3 * 4 = 12.", 12) == [
        "the worked solution speaks of a program the answer does not show"
    ]
    asks_code = "Write a Python function that counts 3 boxes of 4 pens."
    assert math_dialog_problems(asks_code, "3 × 4 = 12.", 12) == [
        "the problem asks for code, and the answer is a worked solution"
    ]


def test_rag_answers_that_do_not_fit_their_question_or_their_context() -> None:
    q = "How many bridges cross the river?"
    assert rag_dialog_problems(q, "numeric", "Seven bridges cross it.", False) == []
    assert rag_dialog_problems(q, "numeric", "There are 7 bridges.", False) == []
    assert rag_dialog_problems(q, "numeric", "Several bridges cross it.", False) == [
        "a numeric question answered without a number"
    ]
    assert rag_dialog_problems(q, "numeric", "The context does not say.", True) == []
    assert rag_dialog_problems(q, "factual", "From general knowledge, 7 bridges.", False) == [
        "the answer calls on knowledge outside the context"
    ]
    guess = "The context does not say, but it was probably built in 1890."
    assert rag_dialog_problems("When was it built?", "unanswerable", guess, True) == [
        "the answer says the context does not say, then guesses"
    ]
    assert rag_dialog_problems(q, "factual", "how many bridges cross the river", False) == [
        "the answer is a question, not an answer"
    ]
    assert rag_dialog_problems(q, "factual", "Which bridge do you mean?", False) == [
        "the answer is a question, not an answer"
    ]


def test_the_rag_answer_stage_rejects_an_incoherent_answer_with_its_reason() -> None:
    from tasks.llm.base import ChatResult
    from tasks.pipeline.llm_stage import Answer
    from tasks.recipes.rag_qa.stages import AnswersConfig, parse_answer

    def said(text: str) -> Answer:
        return Answer(results=[ChatResult(key="k", text=text)])

    row = {"question": "How many bridges cross the river?", "kind": "numeric"}
    config = AnswersConfig.model_construct(check_abstention=True)
    kept = parse_answer(row, said("Seven."), config)
    assert kept["answer"] == "Seven."
    rejected = parse_answer(row, said("Several."), config)
    assert rejected.reason == "incoherent: a numeric question answered without a number"
