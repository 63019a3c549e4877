"""The stages of the math word-problem recipe, as plain functions over a batch of records.

problems (the LLM writes a problem, a worked solution, a program ``solve()`` that computes
the answer, and the answer it states) → static checks (the program parses, defines
``solve()``, the stated answer is a number) → execution in the sandbox (the computed
answer must equal the stated one) → an optional judge (is the problem well-posed?).
"""

from __future__ import annotations

import ast
import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from pydantic import BaseModel, Field

from tasks.core.records import record_id
from tasks.curation.coherence import coherence_stage, math_dialog_problems
from tasks.execution.revise import sandbox_of
from tasks.pipeline.llm_stage import Answer, LLMConfig, Rejected, judge_stage, llm_stage
from tasks.pipeline.stage import Stage, StageContext, StageResult
from tasks.recipes.math_word_problems.answers import parse_number, same_answer, show
from tasks.sandbox.base import Limits, SandboxKind, Verdict
from tasks.sandbox.verify import python_parse_error

# --- 1. problems ---------------------------------------------------------------------------


class MathAnswer(BaseModel):
    """What the model must answer, as JSON."""

    problem: str = Field(min_length=20, description="the word problem")
    solution: str = Field(min_length=1, description="the worked solution, step by step")
    program: str = Field(min_length=1, description="Python defining solve() -> the answer")
    answer: int | float | str = Field(description="the final answer, a number")


def parse_problem(seed: dict[str, Any], answer: Answer, config: LLMConfig) -> dict[str, Any]:
    value = MathAnswer(**answer.value)  # type: ignore[arg-type]
    problem = value.problem.strip()
    return {
        "id": record_id("m", problem),
        "seed_id": seed["id"],
        "source_id": seed.get("source_id", seed["id"]),
        "topic": seed.get("topic", ""),
        "difficulty": seed.get("difficulty", ""),
        "problem": problem,
        "solution": value.solution.strip(),
        "program": value.program.strip() + "\n",
        "stated_answer": str(value.answer),
        "provenance": seed["provenance"],
    }


class SolvedAnswer(BaseModel):
    """What the model must answer, as JSON, for a problem it is given."""

    solution: str = Field(min_length=1, description="the worked solution, step by step")
    program: str = Field(min_length=1, description="Python defining solve() -> the answer")
    answer: int | float | str = Field(description="the final answer, a number")


def parse_solved(row: dict[str, Any], answer: Answer, config: LLMConfig) -> dict[str, Any]:
    """A problem the user brought, with the model's solution, program and answer."""
    value = SolvedAnswer(**answer.value)  # type: ignore[arg-type]
    return {
        **row,
        "solution": value.solution.strip(),
        "program": value.program.strip() + "\n",
        "stated_answer": str(value.answer),
    }


# --- 2. static checks ----------------------------------------------------------------------


class StaticConfig(BaseModel):
    entry_point: str = Field("solve", description="the function the program must define")


def _defines(source: str, name: str) -> bool:
    """A module-level ``def name()`` that needs no argument."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            args = node.args
            return not (args.posonlyargs or args.args[len(args.defaults) :]) and all(
                d is not None for d in args.kw_defaults
            )
    return False


def static_batch(
    rows: list[dict[str, Any]], config: StaticConfig, ctx: StageContext
) -> StageResult:
    """Checks that execute nothing: parse, entry point, a numeric stated answer."""
    out = StageResult()
    for row in rows:
        error = python_parse_error(row["program"])
        stated = parse_number(row["stated_answer"])
        if error:
            out.reject(row, ctx.stage, f"program does not parse: {error}")
        elif not _defines(row["program"], config.entry_point):
            out.reject(row, ctx.stage, f"program defines no {config.entry_point}() to call")
        elif stated is None:
            out.reject(row, ctx.stage, f"stated answer is not a number: {row['stated_answer']!r}")
        else:
            out.kept.append(dict(row, stated_value=stated))
    return out


# --- 3. execution --------------------------------------------------------------------------

MARKER = "WINNOW-ANSWER:"
RUNNER = f"""import json
from program import {{entry}}

print()
print({MARKER!r} + json.dumps({{entry}}(), default=str))
"""


class ExecuteConfig(BaseModel):
    sandbox: SandboxKind = "auto"
    limits: Limits = Field(default_factory=Limits)
    tolerance: float = Field(1e-6, ge=0, le=0.5, description="relative (and absolute) tolerance")
    entry_point: str = "solve"


def computed_answer(verdict: Verdict) -> tuple[Any, str | None]:
    """(what the program's entry point returned, None), or (None, why there is none)."""
    if not verdict.passed:
        tail = (verdict.stderr.strip().splitlines() or [""])[-1]
        kind = "timed out" if verdict.stage in ("timeout", "limit") else "crashed"
        return None, f"program {kind}: {tail or verdict.reason}"[:300]
    lines = [ln for ln in verdict.stdout.splitlines() if ln.startswith(MARKER)]
    if not lines:
        return None, "program printed no answer"
    try:
        return json.loads(lines[-1][len(MARKER) :]), None
    except ValueError:
        return None, "program's answer is not readable"


def execute_batch(
    rows: list[dict[str, Any]], config: ExecuteConfig, ctx: StageContext
) -> StageResult:
    """Run each program in the sandbox (no network, bounded) and keep the rows whose
    computed answer equals the stated one within the tolerance."""
    sandbox = sandbox_of(config.sandbox)
    runner = RUNNER.format(entry=config.entry_point)

    def one(row: dict[str, Any]) -> Verdict:
        files = {"program.py": row["program"], "main.py": runner}
        return sandbox.run(files, ["python3", "-B", "main.py"], config.limits)

    workers = max(1, min(len(rows), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        verdicts = list(pool.map(one, rows))
    out = StageResult()
    for row, verdict in zip(rows, verdicts, strict=True):
        value, why = computed_answer(verdict)
        detail = {"exit_code": verdict.exit_code, "stderr": verdict.stderr[-800:]}
        computed = parse_number(value) if why is None else None
        if why is None and computed is None:
            why = f"computed answer is not a number: {value!r}"[:300]
        if why is not None:
            out.reject(row, ctx.stage, why, detail)
            continue
        assert computed is not None
        if not same_answer(computed, row["stated_value"], config.tolerance):
            reason = f"computed {show(computed)} but stated {row['stated_answer']}"
            out.reject(dict(row, computed_answer=computed), ctx.stage, reason, detail)
            continue
        reference = parse_number(row.get("reference_answer") or "")
        if row.get("reference_answer") and (
            reference is None or not same_answer(computed, reference, config.tolerance)
        ):
            reason = (
                f"computed {show(computed)} but the reference answer is {row['reference_answer']}"
            )
            out.reject(dict(row, computed_answer=computed), ctx.stage, reason, detail)
            continue
        out.kept.append(dict(row, computed_answer=computed, verified=True, sandbox=verdict.backend))
    return out


# --- 4. coherence ----------------------------------------------------------------------------


def coherent_dialog(row: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The published dialog (problem; worked solution and "Answer: X") agrees with itself
    (:func:`tasks.curation.coherence.math_dialog_problems`)."""
    return row, math_dialog_problems(row["problem"], row["solution"], float(row["stated_value"]))


# --- 5. judge (optional) -------------------------------------------------------------------


class JudgeAnswer(BaseModel):
    well_posed: Literal["yes", "no"]
    reason: str = ""


def parse_judgement(
    row: dict[str, Any], answer: Answer, config: LLMConfig
) -> dict[str, Any] | Rejected:
    """Is the problem well-posed: one answer, every needed quantity given, realistic?"""
    verdict = JudgeAnswer(**answer.value)  # type: ignore[arg-type]
    judged = dict(row, judge={**verdict.model_dump(), "model": answer.last.model})
    if verdict.well_posed == "yes":
        return judged
    return Rejected(f"judge: not well-posed: {verdict.reason}".strip(), record=judged)


PROBLEMS = llm_stage("problems", parse_problem, schema=MathAnswer)
SOLVE = llm_stage("problems", parse_solved, schema=SolvedAnswer)  # your own problems
STATIC = Stage("static", static_batch)
EXECUTE = Stage("execute", execute_batch)
COHERENT = coherence_stage(coherent_dialog)
JUDGE = judge_stage("judge", parse_judgement, schema=JudgeAnswer)
