"""Pull a solution and its tests out of a model's answer.

Models are asked for two fenced code blocks (solution, then tests). Small models often
merge them into one block, or run out of tokens mid-block; both cases are handled here
so a recoverable answer is not thrown away (a test block cut mid-statement keeps its whole
statements), and an unrecoverable one says why.
"""

from __future__ import annotations

import ast
import re

from pydantic import BaseModel

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PLACEHOLDER = re.compile(r"^\s*#\s*(the\s+)?(solution|tests?|code)\b[^\n]*$", re.IGNORECASE)
_TEST_START = {
    "python": re.compile(r"^(assert\b|# ?[Tt]ests?\b|def test_|if __name__ ==)", re.MULTILINE),
    "php": re.compile(r"^(assert\s*\(|(?://|#) ?[Tt]ests?\b|function test_)", re.MULTILINE),
}


class Extracted(BaseModel):
    solution: str
    tests: str


class ExtractError(ValueError):
    pass


def _trim_comment_edges(block: str) -> str:
    """Drop comment-only lines at the start and end of a block: models echo placeholders
    such as ``# the solution`` / ``# the tests`` around their code."""
    lines = block.strip("\n").splitlines()
    while lines and (not lines[-1].strip() or lines[-1].lstrip().startswith("#")):
        lines.pop()
    while lines and (not lines[0].strip() or _PLACEHOLDER.match(lines[0])):
        lines.pop(0)
    return "\n".join(lines)


def code_blocks(text: str) -> list[str]:
    blocks = [_trim_comment_edges(m.group(2)) for m in _FENCE.finditer(text)]
    return [b for b in blocks if b.strip()]


def split_solution_and_tests(text: str, language: str = "python") -> Extracted:
    """Two blocks: solution then tests. One block: split where the tests begin (by the
    ``language``'s test markers: ``assert``, a ``# tests`` / ``// tests`` comment, ...)."""
    blocks = code_blocks(text)
    if not blocks:
        if "def " in text or "function " in text:
            blocks = [text.strip()]
        else:
            raise ExtractError("no code block in the answer")
    if len(blocks) >= 2:
        if language == "php":
            return _php_two_blocks(blocks[0], blocks[1])
        tests = whole_statements(blocks[1]) if _cut_off(text) else blocks[1]
        return Extracted(solution=blocks[0].rstrip() + "\n", tests=tests.rstrip() + "\n")
    block = blocks[0]
    match = _TEST_START[language].search(block)
    if not match or match.start() == 0:
        raise ExtractError("the answer has code but no separate tests")
    solution, tests = block[: match.start()], block[match.start() :]
    if not solution.strip():
        raise ExtractError("the answer has tests but no solution")
    if language == "python" and _cut_off(text):
        tests = whole_statements(tests)
    return Extracted(solution=solution.rstrip() + "\n", tests=tests.rstrip() + "\n")


def _cut_off(text: str) -> bool:
    """The answer stopped inside a fenced block (it ran out of tokens): an odd number of
    fences. Only then may a broken last statement be dropped; tests broken anywhere else
    stay broken, fail to parse and go to revision."""
    return text.count("```") % 2 == 1


def whole_statements(tests: str) -> str:
    """Python tests cut off mid-statement (the answer ran out of tokens) without the cut
    statement: the longest run of whole lines from the start that parses, if it still
    holds a statement; otherwise the tests as they were (their parse error is reported)."""
    try:
        ast.parse(tests)
        return tests
    except (SyntaxError, ValueError):
        pass
    lines = tests.splitlines()
    for end in range(len(lines) - 1, 0, -1):
        head = "\n".join(lines[:end])
        try:
            tree = ast.parse(head)
        except (SyntaxError, ValueError):
            continue
        return head if tree.body else tests
    return tests


def _php_two_blocks(first: str, second: str) -> Extracted:
    """Small models often end the PHP solution block with its asserts and put something
    else (a comment, a harness) in the second block. Asserts left in the solution would
    run but not count as tests, so they move out; the tests are then whichever of the two
    holds more assertions (never both: a test set counted twice would look stronger)."""
    match = _TEST_START["php"].search(first)
    if not match or match.start() == 0 or not count_assertions(first[match.start() :], "php"):
        return Extracted(solution=first.rstrip() + "\n", tests=second.rstrip() + "\n")
    solution, moved = first[: match.start()], first[match.start() :]
    tests = second if count_assertions(second, "php") > count_assertions(moved, "php") else moved
    return Extracted(solution=solution.rstrip() + "\n", tests=tests.rstrip() + "\n")


def count_assertions(code: str, language: str = "python") -> int:
    """Assertions in a test script: ``assert`` statements (Python) or ``assert(`` calls and
    comparisons that exit on failure (PHP)."""
    if language == "python":
        return len(re.findall(r"^\s*assert\b", code, re.MULTILINE))
    return len(re.findall(r"\bassert\s*\(", code))
