"""The execute-and-revise stage: run every candidate against its tests in the sandbox,
send the failures back to the model with their output for up to K rounds, and keep what
passes, with the number of rounds it took. Code SFT runs it on Python, the PHP
translation recipe on PHP (``language="php"``)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, Field

from tasks.execution.agreement import Agreement, cross_run, revised_tests_problem
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
    dual_agreement: bool = Field(
        True,
        description="run every candidate of a problem against every candidate's tests "
        "(Python, N ≥ 2): agreed tests are run beside each one's own, suspect tests are "
        "named in the revision prompt, and a revised test must still pass the agreeing code",
    )
    reject_disputed: bool = Field(
        True,
        description="with dual agreement and no two solutions agreeing, reject a candidate "
        "whose code fails a test case that another candidate's code passes (the two "
        "contradict each other and nothing says which is right)",
    )


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
    """The candidate's own tests, then the cases the other candidates' code agreed on
    (:mod:`tasks.execution.agreement`), then the reference tests its input row brought;
    a revision changes only the first (the others stay in their own fields)."""
    parts = [row["tests"].rstrip()]
    if (row.get("agreed_tests") or "").strip():
        parts.append(f"# tests the other candidates agree on\n{row['agreed_tests'].strip()}")
    if (row.get("reference_tests") or "").strip():
        parts.append(f"# reference tests of the input row\n{row['reference_tests'].strip()}")
    return "\n\n".join(parts) + "\n"


class Consensus(dict[str, list[str]]):
    """problem id → the solutions that agreed (what a revised test must still pass)."""


def cross_check(rows: list[dict[str, Any]], config: ExecuteConfig) -> Consensus:
    """Dual agreement for each problem with two or more candidates in the batch: each
    row gets its ``agreed_tests``, an ``agreement`` record, and the revision evidence."""
    consensus = Consensus()
    if not config.dual_agreement or config.language != "python":
        return consensus
    by_problem: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_problem.setdefault(row.get("problem_id", row["id"]), []).append(row)
    limits = config.limits.model_copy(
        update={"wall_s": min(config.limits.wall_s, 10.0), "cpu_s": min(config.limits.cpu_s, 5.0)}
    )
    groups = [(pid, group) for pid, group in by_problem.items() if len(group) >= 2]

    def decide(group: list[dict[str, Any]]) -> Agreement:
        solutions, tests = [r["solution"] for r in group], [r["tests"] for r in group]
        return cross_run(solutions, tests, sandbox_of(config.sandbox), limits)

    # each run is its own sandboxed process: the problems of a batch run side by side
    with ThreadPoolExecutor(max_workers=max(1, min(len(groups), os.cpu_count() or 1))) as pool:
        decisions = list(pool.map(decide, [group for _, group in groups]))
    for (problem_id, group), found in zip(groups, decisions, strict=True):
        if found.decided:
            consensus[problem_id] = [group[j]["solution"] for j in found.consensus]
        for c, row in enumerate(group):
            row["agreed_tests"] = "\n".join(found.agreed_from_others(c))
            row["evidence"] = found.evidence(c)
            row["agreement"] = {
                "decided": found.decided,
                "in_consensus": c in found.consensus,
                "consensus_size": len(found.consensus),
                "candidates": len(group),
                "agreed_cases": len(found.agreed),
                "suspect": found.suspect_cases(c),
                "disputed": found.disputed_cases(c),
            }
    return consensus


def execute_and_revise(
    rows: list[dict[str, Any]], config: ExecuteConfig, ctx: StageContext
) -> StageResult:
    """Run every candidate against its tests; send failures back to the model with their
    output for up to K rounds; keep what passes, with the number of rounds it took."""
    sandbox = sandbox_of(config.sandbox)
    out = StageResult()
    pending = [dict(r, attempts=[]) for r in rows]
    consensus = cross_check(pending, config)
    if config.reject_disputed:
        pending = _drop_disputed(pending, out)
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
        pending = _revise(failing, config, out, ctx, consensus)
    return out


def _drop_disputed(rows: list[dict[str, Any]], out: StageResult) -> list[dict[str, Any]]:
    """Reject the candidates that contradict another one with no consensus to settle it."""
    keep = []
    for row in rows:
        disputed = (row.get("agreement") or {}).get("disputed") or []
        if not disputed:
            keep.append(row)
            continue
        n = row["agreement"]["candidates"]
        out.reject(
            row,
            "execute",
            f"disputed: no two of {n} solutions agree, and this one fails "
            f"{len(disputed)} test case(s) another solution passes, e.g. {disputed[0][:200]}",
            {"rounds": 0, "disputed": disputed[:5]},
        )
    return keep


def _revise(
    failing: list[tuple[dict[str, Any], CaseVerdict]],
    config: ExecuteConfig,
    out: StageResult,
    ctx: StageContext,
    consensus: Consensus,
) -> list[dict[str, Any]]:
    llm = config.revision
    assert llm is not None
    # The whole row goes to the template, so a recipe's may show more (e.g. the Python a
    # PHP translation came from); problem, solution and tests are always there.
    asks = [
        Ask(fields={**row, "feedback": _with_evidence(feedback(verdict), row)})
        for row, verdict in failing
    ]
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
            new["solution"] = code.solution
            if code.tests.strip() != row["tests"].strip():
                refused = revised_tests_problem(
                    row["tests"],
                    code.tests,
                    consensus.get(row.get("problem_id", ""), []),
                    sandbox_of(config.sandbox),
                    config.limits,
                )
                if refused:  # the old tests stay: the revised code must pass them
                    new["tests_refused"] = [*row.get("tests_refused", []), refused]
                else:
                    new.update(tests=code.tests, tests_revised=True)
        # An unusable revision keeps the old code: it fails again and uses up a round.
        revised.append(new)
    return revised


def _with_evidence(text: str, row: dict[str, Any]) -> str:
    evidence = (row.get("evidence") or "").strip()
    return f"{text}\n\n{evidence}" if evidence else text


# version 3: disputed candidates rejected (tasks/execution/agreement.py, another module)
EXECUTE = Stage("execute", execute_and_revise, version="3")
