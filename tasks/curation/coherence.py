"""Does a dialog agree with itself? A check by code on a published example's parts.

A verified answer can still teach the wrong thing: a model that moved its tests out of
the answer and then says "the check function tests various cases" teaches a trainee to
claim tests it never wrote. Before an example is published, its parts are compared:

- a function the request names (```name(```` in backticks) is defined by the code;
- a request that asks for tests gets tests in the answer;
- prose that speaks of tests, a check function or test cases has tests to speak of, and
  a "check function" exists when it says so;
- every name the prose puts in backticks is in the code, the tests or the request;
- code does not end in a comment that announces what follows it (``# Test cases``) with
  nothing after it: :func:`strip_dangling_comments` removes such a tail first.

For a math word problem (the answer is a worked solution and "Answer: X"): the worked
solution reaches the stated answer, does not speak of a program the answer does not
show, and the problem does not ask for code.

For a RAG answer (its context is in the user turn): a numeric question gets a number, an
answer does not call on knowledge outside the context or guess past its own abstention,
and it is an answer, not a question back.

Each failed check is one short reason; the recipe's ``coherent`` stage
(:func:`coherence_stage`) rejects the example with them.
"""

from __future__ import annotations

import ast
import builtins
import functools
import keyword
import re
from collections.abc import Callable, Iterable
from fractions import Fraction
from typing import Any

from tasks.pipeline.stage import Stage, StageContext, StageResult

_ASKS_FOR_TESTS = re.compile(
    r"\b(test cases?|unit tests?|check function|assert statements?|(?:with|include|write|add)"
    r" (?:some |a few )?tests)\b",
    re.IGNORECASE,
)
_SPEAKS_OF_TESTS = re.compile(
    r"\b(test cases?|unit tests?|check function|the tests?|these tests|assertions?|"
    r"asserts?|tested)\b",
    re.IGNORECASE,
)
_CHECK_FUNCTION = re.compile(r"\b(check|test|testing|verification) function\b", re.IGNORECASE)
_BACKTICKED = re.compile(r"`([A-Za-z_][A-Za-z0-9_.]*)(\([^`]*\))?`")
_ANNOUNCING = re.compile(
    r"^\s*#.*\b(test|tests|testing|check|example|usage|driver|assert|verify|data points)\b",
    re.IGNORECASE,
)


def strip_dangling_comments(code: str) -> str:
    """``code`` without a tail of blank and comment lines that announce tests or examples
    (they were followed by code the answer no longer has)."""
    lines = code.rstrip().splitlines()
    end = len(lines)
    while end and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    tail = lines[end:]
    if any(_ANNOUNCING.match(line) for line in tail):
        return "\n".join(lines[:end]).rstrip() + "\n"
    return code


def drop_test_requests(request: str) -> str:
    """``request`` without its sentences that ask for tests or a check function (for a
    recipe that supplies the tests itself, in its own form)."""
    sentences = re.split(r"(?<=[.!?])\s+", request.strip())
    kept = [s for s in sentences if not _ASKS_FOR_TESTS.search(s)]
    return " ".join(kept) if kept else request


def names_in(code: str) -> set[str]:
    """Every identifier the code defines or uses (functions, classes, arguments,
    variables, attributes, imports); empty if it does not parse."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.add(node.name)
        elif isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.arg):
            found.add(node.arg)
        elif isinstance(node, ast.alias):
            found.add((node.asname or node.name).split(".")[0])
    return found


def defined_functions(code: str) -> set[str]:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    return {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


def backticked(text: str) -> Iterable[tuple[str, bool]]:
    """(name, called) for each ```name``` or ```name(...)``` in the text that could be
    the answer's own: dotted names (``str.split``), builtins and keywords are left out,
    since a request or explanation may name them without the code using them."""
    for match in _BACKTICKED.finditer(text):
        name = match.group(1)
        if "." not in name and not _is_value(name):
            yield name, match.group(2) is not None


def python_dialog_problems(request: str, code: str, tests: str, prose: str) -> list[str]:
    """Why a Python answer (``code`` + ``tests`` + ``prose``) does not fit ``request``;
    empty when its parts agree."""
    problems: list[str] = []
    code_names, test_names = names_in(code), names_in(tests)
    defined = defined_functions(code) | defined_functions(tests)
    # the first function the request names is the one it asks for ("Write `rle(s)`...");
    # others may be named only to be avoided or compared with
    asked = next((name for name, called in backticked(request) if called), None)
    if asked and asked not in defined and asked not in code_names:
        problems.append(f"the request asks for `{asked}`, which the code does not define")
    if _ASKS_FOR_TESTS.search(request) and not tests.strip():
        problems.append("the request asks for tests and the answer has none")
    if _SPEAKS_OF_TESTS.search(prose) and not tests.strip():
        problems.append("the explanation speaks of tests the answer does not contain")
    if _CHECK_FUNCTION.search(prose) and not any(
        word in name.lower() for name in defined for word in ("check", "test", "verify")
    ):
        problems.append("the explanation describes a check function the answer does not have")
    known = code_names | test_names | {n for n, _ in backticked(request)}
    for name, _ in backticked(prose):
        if name not in known:
            problems.append(f"the explanation names `{name}`, which is not in the code")
    return _unique(problems)


def _is_value(name: str) -> bool:
    """Literals, builtins and keywords prose may quote without the code naming them."""
    return hasattr(builtins, name) or keyword.iskeyword(name) or name == "self"


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


# --- math word problems ---------------------------------------------------------------------

_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")
_SPEAKS_OF_CODE = re.compile(
    r"\b(?:the|this|our|my|a) (?:python )?(?:program|code|script)\b|\bsolve\(\)", re.IGNORECASE
)
_ASKS_FOR_CODE = re.compile(
    r"\b(?:write|create|implement) (?:a |the )?(?:python )?(?:program|function|script|code)\b",
    re.IGNORECASE,
)


def numbers_in(text: str) -> list[float]:
    """The numbers a text states (1,200 and 3/4 included), in order."""
    found = []
    for match in _NUMBER.finditer(text):
        token = match.group().replace(",", "")
        try:
            found.append(float(Fraction(token)))
        except (ValueError, ZeroDivisionError):
            continue
    return found


def math_dialog_problems(problem: str, solution: str, stated: float) -> list[str]:
    """Why a worked solution does not fit its problem and stated answer; empty when the
    parts agree."""
    problems = []
    if not any(abs(n - stated) <= 1e-6 * max(1.0, abs(stated)) for n in numbers_in(solution)):
        problems.append(f"the worked solution never reaches the stated answer {stated:g}")
    if _SPEAKS_OF_CODE.search(solution):
        problems.append("the worked solution speaks of a program the answer does not show")
    if _ASKS_FOR_CODE.search(problem):
        problems.append("the problem asks for code, and the answer is a worked solution")
    return problems


# --- RAG question answering ------------------------------------------------------------------

_NUMBER_WORDS = re.compile(
    r"\b(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|"
    r"forty|fifty|hundred|thousand|million|billion|half|dozen|once|twice|first|second|third)\b",
    re.IGNORECASE,
)
_OUTSIDE_KNOWLEDGE = re.compile(
    r"\b(?:general knowledge|my (?:own )?knowledge|as an ai|(?:it is |it's )?(?:widely|commonly) "
    r"known|from outside the (?:context|passage)|not (?:in|from) the (?:context|passage),? but)\b",
    re.IGNORECASE,
)
_GUESS = re.compile(
    r"\b(?:but|however|although)\b[^.]*\b(?:likely|probably|presumably|perhaps|may have|"
    r"might|I (?:would )?guess)\b",
    re.IGNORECASE,
)


def rag_dialog_problems(question: str, kind: str, answer: str, abstained: bool) -> list[str]:
    """Why a RAG answer does not fit its question and its context-only instruction; empty
    when they agree."""
    problems = []
    if kind == "numeric" and not abstained:
        if not re.search(r"\d", answer) and not _NUMBER_WORDS.search(answer):
            problems.append("a numeric question answered without a number")
    if _OUTSIDE_KNOWLEDGE.search(answer):
        problems.append("the answer calls on knowledge outside the context")
    if abstained and _GUESS.search(answer):
        problems.append("the answer says the context does not say, then guesses")
    squash = functools.partial(re.sub, r"\W+", " ")
    if (
        answer.rstrip().endswith("?")
        or squash(answer).strip().lower() == squash(question).strip().lower()
    ):
        problems.append("the answer is a question, not an answer")
    return problems


# --- the stage --------------------------------------------------------------------------------

Check = Callable[[dict[str, Any]], tuple[dict[str, Any], list[str]]]


def coherence_stage(check: Check, name: str = "coherent") -> Stage:
    """A stage that keeps a row when ``check(row)`` (the row as it will be published, and
    why its parts disagree) finds nothing, and rejects it with the reasons otherwise."""
    return Stage(name, functools.partial(_coherent_batch, check), code=(check,))


def _coherent_batch(
    check: Check, rows: list[dict[str, Any]], config: None, ctx: StageContext
) -> StageResult:
    out = StageResult()
    for row in rows:
        record, problems = check(row)
        if problems:
            out.reject(record, ctx.stage, "incoherent: " + "; ".join(problems))
        else:
            out.kept.append(record)
    return out
