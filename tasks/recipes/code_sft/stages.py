"""The stages of the code SFT recipe, as plain functions over a batch of records.

problems → solutions (N per problem) → static checks → execution with revision rounds
(:mod:`tasks.execution.revise`) → judge. The LLM stages are declared with their template's
answer schema and a ``parse``; the base (:mod:`tasks.pipeline.llm_stage`) asks, records
the calls, rejects what never came back usable and stamps provenance.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from tasks.core.records import record_id
from tasks.curation.coherence import (
    coherence_stage,
    drop_test_requests,
    python_dialog_problems,
    strip_dangling_comments,
)
from tasks.execution.extract import ExtractError, split_solution_and_tests
from tasks.pipeline.llm_stage import Answer, Ask, LLMConfig, Rejected, judge_stage, llm_stage
from tasks.pipeline.stage import Stage, StageContext, StageResult
from tasks.sandbox.verify import python_parse_error, ruff_findings

# --- 1. problems ---------------------------------------------------------------------------


class ProblemAnswer(BaseModel):
    title: str = ""
    problem: str = Field(min_length=20, description="the problem statement")


def problem_asks(seed: dict[str, Any], config: LLMConfig) -> list[Ask]:
    """One request per seed; none for a problem the user brought (it passes on as is)."""
    return [] if seed.get("problem") else [Ask(fields=seed)]


def parse_problem(seed: dict[str, Any], answer: Answer, config: LLMConfig) -> dict[str, Any]:
    # The recipe writes the tests itself (the solution's asserts, run in the sandbox): a
    # request for a check function or test cases would ask for what the answer lacks.
    problem = drop_test_requests(answer.value["problem"].strip())  # type: ignore[index]
    return {
        "id": record_id("p", problem),
        "seed_id": seed["id"],
        "source_id": seed.get("source_id", seed["id"]),
        "topic": seed.get("topic", ""),
        "difficulty": seed.get("difficulty", ""),
        "title": answer.value.get("title", ""),  # type: ignore[union-attr]
        "problem": problem,
        "provenance": seed["provenance"],
    }


# --- 2. solutions --------------------------------------------------------------------------


class SolutionsConfig(BaseModel):
    llm: LLMConfig
    n: int = Field(4, ge=1, le=64, description="candidate solutions per problem")


def solution_asks(problem: dict[str, Any], config: SolutionsConfig) -> list[Ask]:
    """N draws of one problem, each with its own seed: N candidates."""
    return [
        Ask(
            fields=problem,
            sample=i,
            seed_offset=i,
            record={
                "id": f"{problem['id']}-s{i}",
                "problem_id": problem["id"],
                "problem": problem["problem"],
                "topic": problem.get("topic", ""),
                "difficulty": problem.get("difficulty", ""),
                "source_id": problem.get("source_id", ""),
                "reference_tests": problem.get("reference_tests", ""),
                "sample": i,
            },
        )
        for i in range(config.n)
    ]


def _explanation(text: str) -> str:
    """The prose around the code blocks, if the model wrote any."""
    parts = text.split("```")
    return "\n".join(p.strip() for p in parts[::2] if p.strip())


def parse_solution(
    candidate: dict[str, Any], answer: Answer, config: SolutionsConfig
) -> dict[str, Any] | Rejected:
    try:
        code = split_solution_and_tests(answer.text)
    except ExtractError as exc:
        return Rejected(
            f"malformed model answer: {exc}",
            {"raw": answer.text},
            dict(candidate, raw=answer.text),
        )
    return dict(
        candidate,
        solution=code.solution,
        tests=code.tests,
        explanation=_explanation(answer.text),
    )


# --- 3. static checks ----------------------------------------------------------------------

LintPolicy = Literal["revise", "reject", "report"]


class StaticConfig(BaseModel):
    lint_policy: LintPolicy = Field(
        "revise",
        description="revise: parse/lint failures go to revision; reject: they are dropped; "
        "report: lint findings are only recorded",
    )


def static_batch(
    rows: list[dict[str, Any]], config: StaticConfig, ctx: StageContext
) -> StageResult:
    programs = [f"{r['solution']}\n\n{r['tests']}" for r in rows]
    findings = ruff_findings(programs)
    out = StageResult()
    for row, program, lint in zip(rows, programs, findings, strict=True):
        error = python_parse_error(program)
        record = dict(row, lint=lint, static_error=error or "")
        if config.lint_policy == "reject" and (error or lint):
            reason = f"syntax error: {error}" if error else "lint: " + "; ".join(lint[:3])
            out.reject(record, ctx.stage, reason)
            continue
        out.kept.append(record)
    return out


# --- 5. coherence ---------------------------------------------------------------------------


def coherent_dialog(row: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The example as it will be published must agree with itself: the code loses a tail
    of comments announcing tests that are not there, and a dialog whose request, code,
    tests and explanation disagree is rejected with the reasons
    (:mod:`tasks.curation.coherence`)."""
    record = dict(row, solution=strip_dangling_comments(row["solution"]))
    problems = python_dialog_problems(
        record["problem"], record["solution"], record["tests"], record.get("explanation", "")
    )
    return record, problems


# --- 6. judge ------------------------------------------------------------------------------


class JudgeAnswer(BaseModel):
    correctness: Literal["pass", "fail"]
    style: Literal["pass", "fail"]
    reason: str = ""


class JudgeConfig(BaseModel):
    llm: LLMConfig
    min_score: int = Field(2, ge=0, le=2, description="passes needed out of 2 (correctness, style)")


def parse_judgement(
    row: dict[str, Any], answer: Answer, config: JudgeConfig
) -> dict[str, Any] | Rejected:
    verdict = JudgeAnswer(**answer.value)  # type: ignore[arg-type]
    score = (verdict.correctness == "pass") + (verdict.style == "pass")
    judged = dict(
        row,
        judge={
            **verdict.model_dump(),
            "score": score,
            "provider": answer.last.provider,
            "model": answer.last.model,
        },
    )
    if score >= config.min_score:
        return judged
    return Rejected(
        f"judge: correctness {verdict.correctness}, style {verdict.style}: "
        f"{verdict.reason}".strip(),
        record=judged,
    )


PROBLEMS = llm_stage("problems", parse_problem, schema=ProblemAnswer, asks=problem_asks)
SOLUTIONS = llm_stage("solutions", parse_solution, asks=solution_asks)
STATIC = Stage("static", static_batch)
COHERENT = coherence_stage(coherent_dialog)
JUDGE = judge_stage("judge", parse_judgement, schema=JudgeAnswer)
