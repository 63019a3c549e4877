"""The stages of the PHP translation recipe that code SFT does not already have.

python_check → translate → (execute with revision: :mod:`tasks.execution.revise` with
``language="php"``) → coverage → faithfulness. Plain functions over a batch of records,
like every stage: they return kept rows, rejections with a stage and a reason, and the
LLM calls they made (the LLM stages through :mod:`tasks.pipeline.llm_stage`).
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from tasks.execution.extract import ExtractError, count_assertions, split_solution_and_tests
from tasks.execution.revise import sandbox_of
from tasks.pipeline.llm_stage import Answer, LLMConfig, Rejected, judge_stage, llm_stage
from tasks.pipeline.stage import Stage, StageContext, StageResult
from tasks.sandbox.base import Limits, SandboxKind
from tasks.sandbox.verify import Case, verify_cases

# --- 1. the Python must pass first ---------------------------------------------------------


class PythonCheckConfig(BaseModel):
    sandbox: SandboxKind = "auto"
    limits: Limits = Field(default_factory=Limits)


def python_check_batch(
    rows: list[dict[str, Any]], config: PythonCheckConfig, ctx: StageContext
) -> StageResult:
    """Run each Python solution against its tests: a translation is only as good as the
    code it came from, so unverified Python is rejected before any request is paid."""
    cases = [Case(id=r["id"], solution=r["python_solution"], tests=r["python_tests"]) for r in rows]
    verdicts = verify_cases(cases, "python", sandbox_of(config.sandbox), limits=config.limits)
    out = StageResult()
    for row, verdict in zip(rows, verdicts, strict=True):
        n = count_assertions(row["python_tests"], "python")
        if not verdict.passed:
            out.reject(
                row,
                ctx.stage,
                f"python does not pass: {verdict.stage}: {verdict.reason}",
                {"exit_code": verdict.exit_code, "stderr": verdict.stderr[-500:]},
            )
        elif n == 0:
            out.reject(row, ctx.stage, "python tests have no assert statement to carry over")
        else:
            out.kept.append(dict(row, python_verified=True, python_assertions=n))
    return out


# --- 2. translation ------------------------------------------------------------------------

_TEST_PREAMBLE = re.compile(
    r"^\s*(<\?php\b|declare\s*\(\s*strict_types\s*=\s*1\s*\)\s*;"
    r"|(require|include)(_once)?\b[^;]*;)[ \t]*\n?",
    re.IGNORECASE | re.MULTILINE,
)


def tidy_php_tests(tests: str) -> str:
    """Drop what models put atop a PHP test block that breaks once it is appended to the
    solution: a second ``<?php``, a second ``declare(strict_types=1)`` (fatal unless
    first in the file), and ``require 'solution.php'`` of a file that does not exist."""
    return _TEST_PREAMBLE.sub("", tests).strip("\n") + "\n"


def parse_translation(
    row: dict[str, Any], answer: Answer, config: LLMConfig
) -> dict[str, Any] | Rejected:
    try:
        code = split_solution_and_tests(answer.text, "php")
    except ExtractError as exc:
        return Rejected(f"malformed model answer: {exc}", {"raw": answer.text})
    return dict(row, solution=code.solution, tests=tidy_php_tests(code.tests))


# --- 4. coverage: the PHP tests check at least what the Python tests checked ----------------

_PHP_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*|#(?!\[)[^\n]*", re.DOTALL)


def php_assertions(tests: str) -> int:
    """``assert(`` calls outside comments: a commented-out assertion checks nothing."""
    return count_assertions(_PHP_COMMENT.sub("", tests), "php")


class CoverageConfig(BaseModel):
    min_ratio: float = Field(
        1.0, ge=0, le=10, description="PHP assertions needed per Python assertion"
    )


def coverage_batch(
    rows: list[dict[str, Any]], config: CoverageConfig, ctx: StageContext
) -> StageResult:
    out = StageResult()
    for row in rows:
        n_php = php_assertions(row["tests"])
        needed = math.ceil(row["python_assertions"] * config.min_ratio)
        record = dict(row, php_assertions=n_php)
        if n_php < needed:
            out.reject(
                record,
                ctx.stage,
                f"tests weakened: {n_php} PHP assertion(s) for "
                f"{row['python_assertions']} Python assert(s)",
                {"php_assertions": n_php, "python_assertions": row["python_assertions"]},
            )
        else:
            out.kept.append(record)
    return out


# --- 5. faithfulness: an LLM compares the PHP with the Python ------------------------------


class FaithfulnessAnswer(BaseModel):
    same_behaviour: Literal["yes", "no"]
    same_tests: Literal["yes", "no"]
    reason: str = ""

    @field_validator("same_behaviour", "same_tests", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return "yes" if value else "no"
        return value.strip().lower() if isinstance(value, str) else value


class FaithfulnessConfig(BaseModel):
    llm: LLMConfig
    policy: Literal["reject", "record"] = Field(
        "reject", description="reject: an unfaithful verdict drops the row; record: keep it"
    )


def parse_faithfulness(
    row: dict[str, Any], answer: Answer, config: FaithfulnessConfig
) -> dict[str, Any] | Rejected:
    verdict = FaithfulnessAnswer(**answer.value)  # type: ignore[arg-type]
    faithful = verdict.same_behaviour == "yes" and verdict.same_tests == "yes"
    record = dict(
        row,
        faithfulness={
            **verdict.model_dump(),
            "faithful": faithful,
            "provider": answer.last.provider,
            "model": answer.last.model,
        },
    )
    if faithful or config.policy == "record":
        return record
    return Rejected(
        f"unfaithful: same behaviour {verdict.same_behaviour}, same tests "
        f"{verdict.same_tests}: {verdict.reason}".strip(),
        record=record,
    )


PYTHON_CHECK = Stage("python_check", python_check_batch)
TRANSLATE = llm_stage("translate", parse_translation)
COVERAGE = Stage("coverage", coverage_batch)
FAITHFULNESS = judge_stage(
    "faithfulness",
    parse_faithfulness,
    schema=FaithfulnessAnswer,
    malformed="faithfulness answer malformed",
)
