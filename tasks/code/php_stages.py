"""The stages of the PHP translation recipe that code SFT does not already have.

python_check → translate → (execute with revision: ``tasks.code.stages.execute_and_revise``
with ``language="php"``) → coverage → faithfulness. Plain functions over a batch of
records, like every stage: they return kept rows, rejections with a stage and a reason,
and the LLM calls they made.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from tasks.clients import client_for
from tasks.code.extract import ExtractError, count_assertions, split_solution_and_tests
from tasks.generation import LLMConfig, load_pinned, provenance
from tasks.sandbox.base import Limits, SandboxKind
from tasks.stage import Stage, StageContext, StageResult
from tasks.verify import Case, verify_cases


@lru_cache(maxsize=4)
def _sandbox(kind: SandboxKind):
    from tasks.sandbox.select import get_sandbox

    return get_sandbox(kind)


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
    verdicts = verify_cases(cases, "python", _sandbox(config.sandbox), limits=config.limits)
    out = StageResult()
    for row, verdict in zip(rows, verdicts, strict=True):
        ctx.progress()
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


def translate_batch(
    rows: list[dict[str, Any]], config: LLMConfig, ctx: StageContext
) -> StageResult:
    template = load_pinned(config)
    client = client_for(config.provider)
    requests = [template.request(row, params=config.params) for row in rows]
    results = client.complete_many(requests, on_result=lambda *_: ctx.progress())
    out = StageResult()
    out.add_calls(results, template.name, template.version)
    for row, result in zip(rows, results, strict=True):
        record = dict(row, provenance=provenance(ctx, config, result))
        if not result.ok:
            out.reject(record, ctx.stage, f"request failed: {result.error}")
            continue
        try:
            code = split_solution_and_tests(result.text or "", "php")
        except ExtractError as exc:
            out.reject(record, ctx.stage, f"malformed model answer: {exc}", {"raw": result.text})
            continue
        record.update(solution=code.solution, tests=tidy_php_tests(code.tests))
        out.kept.append(record)
    return out


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
        ctx.progress()
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


def faithfulness_batch(
    rows: list[dict[str, Any]], config: FaithfulnessConfig, ctx: StageContext
) -> StageResult:
    template = load_pinned(config.llm)
    client = client_for(config.llm.provider)
    requests = [template.request(row, params=config.llm.params) for row in rows]
    answers = client.complete_json(
        requests, FaithfulnessAnswer, on_result=lambda *_: ctx.progress()
    )
    out = StageResult()
    for row, answer in zip(rows, answers, strict=True):
        out.add_calls(answer.results, template.name, template.version)
        if not answer.ok:
            out.reject(
                row,
                ctx.stage,
                f"faithfulness answer malformed: {answer.error}",
                {"raw": answer.raw},
            )
            continue
        verdict = FaithfulnessAnswer(**answer.value)  # type: ignore[arg-type]
        faithful = verdict.same_behaviour == "yes" and verdict.same_tests == "yes"
        record = dict(
            row,
            faithfulness={
                **verdict.model_dump(),
                "faithful": faithful,
                "provider": answer.results[-1].provider,
                "model": answer.results[-1].model,
            },
        )
        if faithful or config.policy == "record":
            out.kept.append(record)
        else:
            out.reject(
                record,
                ctx.stage,
                f"unfaithful: same behaviour {verdict.same_behaviour}, same tests "
                f"{verdict.same_tests}: {verdict.reason}".strip(),
            )
    return out


PYTHON_CHECK = Stage("python_check", python_check_batch)
TRANSLATE = Stage("translate", translate_batch)
COVERAGE = Stage("coverage", coverage_batch)
FAITHFULNESS = Stage("faithfulness", faithfulness_batch)
