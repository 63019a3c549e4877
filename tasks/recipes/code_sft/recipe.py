"""Parameters, plan and examples of the code SFT recipe (its DAG is in flows/code_sft.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from tasks.core.paths import prompts_dir
from tasks.core.seeds import load_topics, seed_rows
from tasks.curation.diversity import diversity_report, diversity_suite, minilm
from tasks.curation.exact import ExactDedupConfig
from tasks.curation.optional import CurationParams, CurationPlan, plan_curation, scores_of
from tasks.curation.rubric_feedback import Criterion, Rubric
from tasks.execution.params import SandboxParams
from tasks.execution.revise import ExecuteConfig
from tasks.gates.gx import check_suites
from tasks.gates.suites import SuiteSpec, load_suite
from tasks.pipeline.llm_stage import LLMConfig
from tasks.pipeline.params import CardParams, OwnProblemsParams, ProviderParams
from tasks.pipeline.publish import preference_pairs, revision_summary
from tasks.pipeline.run import Run
from tasks.pipeline.stage import StageOutput
from tasks.recipes.code_sft.inputs import check_problems, load_snippets, problem_rows
from tasks.recipes.code_sft.stages import JudgeConfig, SolutionsConfig, StaticConfig

SUITES = [
    "code_sft.problems",
    "code_sft.diversity",
    "code_sft.solutions",
    "code_sft.executed",
    "code_sft.kept",
]

# Applied by `winnow run code-sft` when the embedded model runs with no options, so the
# first run finishes in minutes on 2 cores.
SMALL_LOCAL_DEFAULTS = {"n_problems": 2, "n_solutions": 2, "max_revision_rounds": 1}


# The judge's criteria (prompts/code_sft/judge.toml), related to IFD and utility by
# `rubric_feedback=true`.
RUBRIC = Rubric(
    stage="judge",
    criteria=[
        Criterion(name="correctness", field="judge.correctness"),
        Criterion(name="style", field="judge.style"),
    ],
)


class CodeSFTParams(CurationParams, SandboxParams, OwnProblemsParams, ProviderParams, CardParams):
    """Parameters of the code SFT recipe (the Prefect UI shows them as a form)."""

    out: str = Field("out/code-sft", description="output directory (published atomically)")
    n_problems: int = Field(8, ge=1, le=1_000_000, description="problems to generate")
    tests_field: str | None = Field(
        None,
        description="a field of `problems` with reference tests (code, or a list of asserts), "
        "run beside each candidate's own",
    )
    topics_file: str | None = Field(None, description="one topic per line (default: built-in list)")
    snippets: str | None = Field(
        None, description="file or folder of code snippets to seed problems"
    )
    difficulties: list[str] = Field(
        ["easy", "medium"], min_length=1, description="problem difficulties, drawn in turn"
    )
    concepts_file: str | None = Field(
        None,
        description="requirements drawn with each topic, one a line (the shipped list: "
        "prompts/code_sft/concepts.txt; none by default)",
    )
    personas_file: str | None = Field(
        None,
        description="whose data each problem uses, one a line (the shipped list: "
        "prompts/code_sft/personas.txt; none by default)",
    )
    diversity_gate: Literal["critical", "warning", "off"] = Field(
        "warning",
        description="gate on the problems' diversity before any solution is paid for: "
        "stop the run, warn, or skip (the report is made either way)",
    )
    min_problem_spread: float = Field(
        0.2, ge=0, le=1, description="diversity gate: least spread (1 - mean cosine) of problems"
    )
    max_near_duplicate_share: float = Field(
        0.5, ge=0, le=1, description="diversity gate: largest share of near-duplicate problems"
    )
    n_solutions: int = Field(4, ge=1, le=64, description="candidate solutions per problem (N)")
    max_revision_rounds: int = Field(2, ge=0, le=10, description="revision rounds (K)")
    min_judge_score: int = Field(2, ge=0, le=2, description="judge passes needed of 2")
    dual_agreement: bool = Field(
        True,
        description="judge the tests too: each candidate's code runs against every "
        "candidate's tests, and the cases the most code agrees on are trusted (CodeT)",
    )
    reject_disputed: bool = Field(
        True,
        description="with dual agreement, when no two solutions agree, reject a candidate "
        "whose code fails a test case another candidate's code passes",
    )
    lint_policy: Literal["revise", "reject", "report"] = Field(
        "revise",
        description="parse/lint failures: revise the code, reject it, or (lint) only report",
    )
    solution_max_tokens: int = Field(
        600, ge=64, le=32768, description="output budget of a solution or revision"
    )
    seed: int = Field(0, description="base sampling seed")


class Plan(BaseModel):
    seeds: Any = None  # an iterator of seed rows (not serialised)
    problems: LLMConfig
    unique: ExactDedupConfig
    solutions: SolutionsConfig
    static: StaticConfig
    execute: ExecuteConfig
    judge: JudgeConfig
    dedup: ExactDedupConfig
    curation: CurationPlan
    diversity: SuiteSpec | None


def plan(params: CodeSFTParams) -> Plan:
    """Check everything that can be checked before a request is made, and build each
    stage's configuration. Raises a clear error for any problem."""
    topics = load_topics(params.topics_file, default=prompts_dir() / "code_sft" / "topics.txt")
    snippets = load_snippets(params.snippets)
    if params.problems:
        fields = (params.problems, params.problem_field, params.tests_field, params.limit)
        check_problems(*fields)
        seeds = problem_rows(*fields)
    else:
        # Off by default: on the embedded 1.5B model, problems drawn with a requirement
        # and a persona came out longer and the small demo run kept nothing in 2 of 3 tries
        concepts = load_topics(params.concepts_file)
        personas = load_topics(params.personas_file)
        seeds = seed_rows(
            params.n_problems,
            topics,
            params.difficulties,
            snippets,
            concepts,
            personas,
            seed=params.seed,
        )
    check_suites(SUITES)
    params.check_sandbox()
    params.check_providers()
    seed, tokens = params.seed, params.solution_max_tokens
    return Plan(
        seeds=seeds,
        problems=params.generator_llm("code_sft/problem", seed=seed),
        unique=ExactDedupConfig(fields=["problem"]),
        solutions=SolutionsConfig(
            llm=params.generator_llm("code_sft/solution", seed=seed, max_tokens=tokens),
            n=params.n_solutions,
        ),
        static=StaticConfig(lint_policy=params.lint_policy),
        execute=ExecuteConfig(
            revision=params.generator_llm("code_sft/revision", seed=seed, max_tokens=tokens)
            if params.max_revision_rounds
            else None,
            max_rounds=params.max_revision_rounds,
            sandbox=params.sandbox,
            strict_lint=params.lint_policy == "revise",
            limits=params.limits(),
            dual_agreement=params.dual_agreement,
            reject_disputed=params.reject_disputed,
        ),
        judge=JudgeConfig(llm=params.judge_llm("code_sft/judge"), min_score=params.min_judge_score),
        dedup=ExactDedupConfig(fields=["problem", "solution"], strip_comments=True),
        curation=plan_curation(
            params,
            fields=["problem", "solution"],
            semantic_field="problem",
            score_field="judge.score",
            rubric=RUBRIC,
        ),
        diversity=None
        if params.diversity_gate == "off"
        else diversity_suite(
            load_suite("code_sft.diversity"),
            params.min_problem_spread,
            params.max_near_duplicate_share,
            params.diversity_gate,
        ),
    )


def to_example(row: dict[str, Any]) -> dict[str, Any]:
    """A kept candidate as a chat example: user asks the problem, assistant answers with
    the solution (its reasoning in comments), the tests it ran against, and any
    explanation it wrote (checked to agree with them by the coherence stage)."""
    answer = f"```python\n{row['solution'].rstrip()}\n```"
    if row.get("tests", "").strip():
        answer = f"{answer}\n\nTests:\n\n```python\n{row['tests'].rstrip()}\n```"
    if row.get("explanation"):
        answer = f"{answer}\n\n{row['explanation']}"
    return {
        "id": row["id"],
        "messages": [
            {"role": "user", "content": row["problem"]},
            {"role": "assistant", "content": answer},
        ],
        "metadata": {
            "source_id": row.get("source_id", ""),
            "problem_id": row["problem_id"],
            "topic": row.get("topic", ""),
            "difficulty": row.get("difficulty", ""),
            "tests": row["tests"],
            "passed_reference_tests": bool(row.get("reference_tests")),
            "revision_rounds": row.get("revision_rounds", 0),
            "tests_revised": bool(row.get("tests_revised")),
            "agreement": row.get("agreement", {}),
            "attempts": row.get("attempts", []),
            "judge": row.get("judge", {}),
            "lint": row.get("lint", []),
            "sandbox": row.get("backend", ""),
            "provenance": row.get("provenance", {}),
            **scores_of(row),  # metadata.ifd / metadata.utility, where curation scored
        },
    }


def problem_diversity(run: Run, unique: StageOutput, suite: SuiteSpec | None) -> dict[str, Any]:
    """The diversity report of the unique problems (:mod:`tasks.curation.diversity`), and
    its gate, before any solution is paid for."""
    problems = (r["problem"] for r in unique.kept_rows(columns=["problem"]))
    report = {**diversity_report(problems, minilm()), "exact_duplicates_removed": unique.n_rejected}
    if suite is not None:
        run.gate_report(unique.stage, report, suite)
    return report


def publish_code_sft(
    run: Run,
    final: StageOutput,
    diversity: dict[str, Any],
    feedback: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The dataset, its rejections and, from kept and failed candidates of one problem,
    DPO preference pairs; with ``feedback``, the rubric feedback in funnel.json."""
    summary = {**revision_summary(run.outputs, final), "diversity": diversity}
    if feedback is not None:
        summary["rubric_feedback"] = feedback
    return run.publish(
        final,
        to_example,
        extra={"preferences.jsonl": preference_pairs(final, run.outputs)},
        summary=summary,
    )
