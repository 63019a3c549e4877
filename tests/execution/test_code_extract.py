"""Pulling solution and tests out of model answers, including the ways small models err."""

import pytest

from tasks.execution.extract import ExtractError, count_assertions, split_solution_and_tests

FENCE = "```"


def test_two_blocks_with_placeholder_comments() -> None:
    text = (
        f"Here you go.\n{FENCE}python\n# the solution\ndef f(s):\n    return s\n\n# the tests\n"
        f"{FENCE}\n{FENCE}python\n# Tests\nassert f(1) == 1\n{FENCE}\nDone."
    )
    got = split_solution_and_tests(text)
    assert got.solution == "def f(s):\n    return s\n"
    assert got.tests == "assert f(1) == 1\n"


def test_one_block_is_split_where_tests_begin() -> None:
    text = f"{FENCE}python\ndef f(x):\n    return x\n\nassert f(2) == 2\n{FENCE}"
    got = split_solution_and_tests(text)
    assert got.solution == "def f(x):\n    return x\n"
    assert got.tests == "assert f(2) == 2\n"


def test_truncated_answer_keeps_what_it_has() -> None:
    text = (
        f"{FENCE}python\ndef f(x):\n    return x\n{FENCE}\n"
        f"{FENCE}python\nassert f(1) == 1\nassert f("
    )
    got = split_solution_and_tests(text)
    assert got.tests == "assert f(1) == 1\n"  # the cut statement is dropped


@pytest.mark.parametrize(
    "text, message",
    [
        ("I cannot help with that.", "no code block"),
        (f"{FENCE}python\ndef f(x):\n    return x\n{FENCE}", "no separate tests"),
    ],
)
def test_unusable_answers_say_why(text: str, message: str) -> None:
    with pytest.raises(ExtractError, match=message):
        split_solution_and_tests(text)


def test_count_assertions() -> None:
    assert count_assertions("assert a\n  assert b\nx = 'assert'\n") == 2
    assert count_assertions("assert($a === 1);\nassert ($b);", "php") == 2


def test_tests_cut_mid_statement_keep_their_whole_statements() -> None:
    """An answer that ran out of tokens inside its last assert keeps the asserts before
    it; tests that are broken from the start are left as they are (and fail to parse)."""
    cut = (
        "```python\ndef f(x):\n    return x + 1\n```\n"
        '```python\nassert f(1) == 2, "one"\nassert f(2) == 3\nassert f(5) == (6,\n'
    )
    assert split_solution_and_tests(cut).tests == 'assert f(1) == 2, "one"\nassert f(2) == 3\n'
    one_block = "```python\ndef f(x):\n    return x + 1\n\nassert f(1) == 2\nassert f(2) ==\n"
    assert split_solution_and_tests(one_block).tests == "assert f(1) == 2\n"
    broken = "```python\ndef f(x):\n    return x\n```\n```python\nassert f(1 ==\n```"
    assert split_solution_and_tests(broken).tests == "assert f(1 ==\n"
    # a finished answer with a broken test in the middle keeps it (it goes to revision)
    middle = (
        "```python\ndef f(x):\n    return x\n```\n"
        "```python\nassert f(1) == 1\nassert f(\nassert f(2) == 2\n```"
    )
    assert (
        split_solution_and_tests(middle).tests == "assert f(1) == 1\nassert f(\nassert f(2) == 2\n"
    )
