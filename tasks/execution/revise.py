"""The execute-and-revise stage: run every candidate against its tests in the sandbox,
send the failures back to the model with their output for up to K rounds, and keep what
passes, with the number of rounds it took. Code SFT runs it on Python, the PHP
translation recipe on PHP (``language="php"``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, Field

from tasks.execution.extract import ExtractError, split_solution_and_tests
from tasks.pipeline.llm_stage import Ask, LLMConfig, ask
from tasks.pipeline.stage import Stage, StageContext, StageResult
from tasks.sandbox.base import Limits, SandboxKind
from tasks.sandbox.verify import Case, CaseVerdict, verify_cases


class ExecuteConfig(BaseModel):
    revision: LLMConfig | None = Field(None, description="None: no revision rounds")
    max_rounds: int = Field(2, ge=0, le=10, description="revision rounds (K)")
    language: Literal["python", "php"] = "python"
    sandbox: SandboxKind = "auto"
    strict_lint: bool = True
    limits: Limits = Field(default_factory=Limits)


@lru_cache(maxsize=4)
def sandbox_of(kind: SandboxKind):
    """One sandbox per kind per process (probing a backend costs a process start)."""
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


def all_tests(row: dict[str, Any]) -> str:
    """The candidate's own tests, then the reference tests its input row brought (which a
    revision cannot change: they stay in the row's ``reference_tests``)."""
    reference = (row.get("reference_tests") or "").strip()
    if not reference:
        return row["tests"]
    return f"{row['tests'].rstrip()}\n\n# reference tests of the input row\n{reference}\n"


def execute_and_revise(
    rows: list[dict[str, Any]], config: ExecuteConfig, ctx: StageContext
) -> StageResult:
    """Run every candidate against its tests; send failures back to the model with their
    output for up to K rounds; keep what passes, with the number of rounds it took."""
    sandbox = sandbox_of(config.sandbox)
    out = StageResult()
    pending = [dict(r, attempts=[]) for r in rows]
    for round_ in range(config.max_rounds + 1):
        cases = [Case(id=r["id"], solution=r["solution"], tests=all_tests(r)) for r in pending]
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
        if round_ == config.max_rounds or config.revision is None:
            for row, verdict in failing:
                stage = "execute" if round_ == 0 else "revision"
                out.reject(
                    row,
                    stage,
                    f"{verdict.stage}: {verdict.reason}",
                    {"rounds": round_, "exit_code": verdict.exit_code},
                )
            break
        pending = _revise(failing, config, out, ctx)
    return out


def _revise(
    failing: list[tuple[dict[str, Any], CaseVerdict]],
    config: ExecuteConfig,
    out: StageResult,
    ctx: StageContext,
) -> list[dict[str, Any]]:
    llm = config.revision
    assert llm is not None
    # The whole row goes to the template, so a recipe's may show more (e.g. the Python a
    # PHP translation came from); problem, solution and tests are always there.
    asks = [Ask(fields={**row, "feedback": feedback(verdict)}) for row, verdict in failing]
    answers = ask(llm, asks, label=f"{ctx.stage}-revision")
    revised = []
    for (row, _verdict), answer in zip(failing, answers, strict=True):
        out.add_calls(answer.results, llm.template, llm.template_version)
        new = dict(row)
        try:
            code = split_solution_and_tests(answer.text, config.language) if answer.ok else None
        except ExtractError:
            code = None
        if code is not None:
            new.update(solution=code.solution, tests=code.tests)
        # An unusable revision keeps the old code: it fails again and uses up a round.
        revised.append(new)
    return revised


EXECUTE = Stage("execute", execute_and_revise)
