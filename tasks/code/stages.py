"""The stages of the code recipes, as plain functions over a batch of records.

problems → solutions (N per problem) → static checks → execution with revision rounds →
judge. Each takes rows, a config and a context, and returns kept rows, rejections with a
stage and a reason, and the LLM calls it made. The PHP translation recipe reuses
``execute_and_revise`` with ``language="php"``.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, Field

from tasks.clients import client_for
from tasks.code.extract import ExtractError, split_solution_and_tests
from tasks.generation import LLMConfig, load_pinned, provenance
from tasks.llm.base import ChatResult, GenerationParams
from tasks.sandbox.base import Limits, SandboxKind
from tasks.stage import Stage, StageContext, StageResult
from tasks.verify import Case, CaseVerdict, python_parse_error, ruff_findings, verify_cases


def short_hash(*parts: str, n: int = 12) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:n]


# --- 1. problems ---------------------------------------------------------------------------


class ProblemAnswer(BaseModel):
    title: str = ""
    problem: str = Field(min_length=20, description="the problem statement")


def problems_batch(rows: list[dict[str, Any]], config: LLMConfig, ctx: StageContext) -> StageResult:
    template = load_pinned(config)
    client = client_for(config.provider)
    requests = [template.request(row, params=config.params) for row in rows]
    answers = client.complete_json(requests, ProblemAnswer, on_result=lambda *_: ctx.progress())
    out = StageResult()
    for row, answer in zip(rows, answers, strict=True):
        out.add_calls(answer.results, template.name, template.version)
        if not answer.ok:
            out.reject(
                row, ctx.stage, f"malformed model answer: {answer.error}", {"raw": answer.raw}
            )
            continue
        problem = answer.value["problem"].strip()  # type: ignore[index]
        out.kept.append(
            {
                "id": "p-" + short_hash(problem),
                "seed_id": row["id"],
                "topic": row.get("topic", ""),
                "difficulty": row.get("difficulty", ""),
                "title": answer.value.get("title", ""),  # type: ignore[union-attr]
                "problem": problem,
                "provenance": provenance(ctx, config, answer.results[-1]),
            }
        )
    return out


# --- 2. solutions --------------------------------------------------------------------------


class SolutionsConfig(BaseModel):
    llm: LLMConfig
    n: int = Field(4, ge=1, le=64, description="candidate solutions per problem")


def _explanation(text: str) -> str:
    """The prose around the code blocks, if the model wrote any."""
    parts = text.split("```")
    return "\n".join(p.strip() for p in parts[::2] if p.strip())


def solutions_batch(
    rows: list[dict[str, Any]], config: SolutionsConfig, ctx: StageContext
) -> StageResult:
    template = load_pinned(config.llm)
    client = client_for(config.llm.provider)
    requests, owners = [], []
    for row in rows:
        for i in range(config.n):
            params = _with_seed(config.llm.params, i)
            requests.append(template.request(row, params=params, sample=i))
            owners.append((row, i))
    results = client.complete_many(requests, on_result=lambda *_: ctx.progress())
    out = StageResult(n_in=len(requests))
    out.add_calls(results, template.name, template.version)
    for (problem, i), result in zip(owners, results, strict=True):
        candidate = {
            "id": f"{problem['id']}-s{i}",
            "problem_id": problem["id"],
            "problem": problem["problem"],
            "topic": problem.get("topic", ""),
            "difficulty": problem.get("difficulty", ""),
            "sample": i,
            "provenance": provenance(ctx, config.llm, result),
        }
        if not result.ok:
            out.reject(candidate, ctx.stage, f"request failed: {result.error}")
            continue
        try:
            code = split_solution_and_tests(result.text or "")
        except ExtractError as exc:
            candidate["raw"] = result.text
            out.reject(candidate, ctx.stage, f"malformed model answer: {exc}", {"raw": result.text})
            continue
        candidate.update(
            solution=code.solution, tests=code.tests, explanation=_explanation(result.text or "")
        )
        out.kept.append(candidate)
    return out


def _with_seed(params: GenerationParams, sample: int) -> GenerationParams:
    base = params.seed or 0
    return params.model_copy(update={"seed": base + sample})


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
        ctx.progress()
        error = python_parse_error(program)
        record = dict(row, lint=lint, static_error=error or "")
        if config.lint_policy == "reject" and (error or lint):
            reason = f"syntax error: {error}" if error else "lint: " + "; ".join(lint[:3])
            out.reject(record, ctx.stage, reason)
            continue
        out.kept.append(record)
    return out


# --- 4 and 5. execution, and revision from the error output ---------------------------------


class ExecuteConfig(BaseModel):
    revision: LLMConfig | None = Field(None, description="None: no revision rounds")
    max_rounds: int = Field(2, ge=0, le=10, description="revision rounds (K)")
    language: Literal["python", "php"] = "python"
    sandbox: SandboxKind = "auto"
    strict_lint: bool = True
    limits: Limits = Field(default_factory=Limits)


@lru_cache(maxsize=4)
def _sandbox(kind: SandboxKind):
    from tasks.sandbox.select import get_sandbox

    return get_sandbox(kind)


def feedback(verdict: CaseVerdict) -> str:
    stdout = getattr(verdict, "stdout", "") or ""
    stderr = getattr(verdict, "stderr", "") or ""
    parts = [
        f"stage: {verdict.stage}",
        f"exit code: {verdict.exit_code}",
        f"reason: {verdict.reason}",
    ]
    if stdout.strip():
        parts.append("stdout:\n" + stdout[-1500:])
    if stderr.strip():
        parts.append("stderr:\n" + stderr[-1500:])
    return "\n".join(parts)


def execute_and_revise(
    rows: list[dict[str, Any]], config: ExecuteConfig, ctx: StageContext
) -> StageResult:
    """Run every candidate against its tests; send failures back to the model with their
    output for up to K rounds; keep what passes, with the number of rounds it took."""
    sandbox = _sandbox(config.sandbox)
    out = StageResult()
    pending = [dict(r, attempts=[]) for r in rows]
    template = load_pinned(config.revision) if config.revision else None
    for round_ in range(config.max_rounds + 1):
        cases = [Case(id=r["id"], solution=r["solution"], tests=r["tests"]) for r in pending]
        verdicts = verify_cases(
            cases, config.language, sandbox, strict_lint=config.strict_lint, limits=config.limits
        )
        failing: list[tuple[dict[str, Any], CaseVerdict]] = []
        for row, verdict in zip(pending, verdicts, strict=True):
            row["attempts"].append(
                {
                    "round": round_,
                    "passed": verdict.passed,
                    "stage": verdict.stage,
                    "reason": verdict.reason,
                    "exit_code": verdict.exit_code,
                }
            )
            if verdict.passed:
                ctx.progress()
                out.kept.append(
                    dict(
                        row,
                        revision_rounds=round_,
                        executed=True,
                        lint=verdict.lint,
                        backend=verdict.backend,
                    )
                )
            else:
                failing.append((row, verdict))
        if not failing:
            break
        if round_ == config.max_rounds or template is None:
            for row, verdict in failing:
                ctx.progress()
                stage = "execute" if round_ == 0 else "revision"
                out.reject(
                    row,
                    stage,
                    f"{verdict.stage}: {verdict.reason}",
                    {"rounds": round_, "exit_code": verdict.exit_code},
                )
            break
        pending = _revise(failing, template, config, out, ctx, round_ + 1)
    return out


def _revise(failing, template, config: ExecuteConfig, out: StageResult, ctx, round_: int):
    client = client_for(config.revision.provider)  # type: ignore[union-attr]
    requests = [
        template.request(
            {
                # The whole row, so a recipe's template may show more (e.g. the Python a
                # PHP translation came from); the four fields below are always there.
                **row,
                "problem": row["problem"],
                "solution": row["solution"],
                "tests": row["tests"],
                "feedback": feedback(verdict),
            },
            params=config.revision.params,  # type: ignore[union-attr]
        )
        for row, verdict in failing
    ]
    results: list[ChatResult] = client.complete_many(requests)
    out.add_calls(results, template.name, template.version)
    revised = []
    for (row, _verdict), result in zip(failing, results, strict=True):
        new = dict(row)
        try:
            text = result.text or ""
            code = split_solution_and_tests(text, config.language) if result.ok else None
        except ExtractError:
            code = None
        if code is not None:
            new.update(solution=code.solution, tests=code.tests)
        # An unusable revision keeps the old code: it fails again and uses up a round.
        revised.append(new)
    return revised


# --- 6. judge ------------------------------------------------------------------------------


class JudgeAnswer(BaseModel):
    correctness: Literal["pass", "fail"]
    style: Literal["pass", "fail"]
    reason: str = ""


class JudgeConfig(BaseModel):
    llm: LLMConfig
    min_score: int = Field(2, ge=0, le=2, description="passes needed out of 2 (correctness, style)")


def judge_batch(rows: list[dict[str, Any]], config: JudgeConfig, ctx: StageContext) -> StageResult:
    template = load_pinned(config.llm)
    client = client_for(config.llm.provider)
    requests = [template.request(row, params=config.llm.params) for row in rows]
    answers = client.complete_json(requests, JudgeAnswer, on_result=lambda *_: ctx.progress())
    out = StageResult()
    for row, answer in zip(rows, answers, strict=True):
        out.add_calls(answer.results, template.name, template.version)
        if not answer.ok:
            out.reject(
                row, ctx.stage, f"judge answer malformed: {answer.error}", {"raw": answer.raw}
            )
            continue
        verdict = JudgeAnswer(**answer.value)  # type: ignore[arg-type]
        score = (verdict.correctness == "pass") + (verdict.style == "pass")
        judged = dict(
            row,
            judge={
                **verdict.model_dump(),
                "score": score,
                "provider": answer.results[-1].provider,
                "model": answer.results[-1].model,
            },
        )
        if score >= config.min_score:
            out.kept.append(judged)
        else:
            out.reject(
                judged,
                ctx.stage,
                f"judge: correctness {verdict.correctness}, style {verdict.style}: "
                f"{verdict.reason}".strip(),
            )
    return out


PROBLEMS = Stage("problems", problems_batch)
SOLUTIONS = Stage("solutions", solutions_batch)
STATIC = Stage("static", static_batch)
EXECUTE = Stage("execute", execute_and_revise)
JUDGE = Stage("judge", judge_batch)
