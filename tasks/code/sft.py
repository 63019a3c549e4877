"""Parameters, plan and publishing of the code SFT recipe (its DAG is in flows/code_sft.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, Field

from tasks.clients import client_for
from tasks.code.sft_inputs import load_snippets, load_topics, seed_rows
from tasks.code.stages import ExecuteConfig, JudgeConfig, SolutionsConfig, StaticConfig
from tasks.curation.optional import CurationParams, CurationPlan, plan_curation
from tasks.dedup import ExactDedupConfig
from tasks.gates.suites import check_suites
from tasks.generation import LLMConfig, llm_config
from tasks.pipeline import Run
from tasks.publishing import preference_pairs, publish_recipe, revision_summary
from tasks.recipe_params import ProviderParams
from tasks.sandbox.base import Limits, SandboxKind
from tasks.stage import StageOutput

SUITES = ["code_sft.problems", "code_sft.solutions", "code_sft.executed", "code_sft.kept"]

# Applied by `winnow run code-sft` when the embedded model runs with no options, so the
# first run finishes in minutes on 2 cores.
SMALL_LOCAL_DEFAULTS = {"n_problems": 2, "n_solutions": 2, "max_revision_rounds": 1}


class CodeSFTParams(CurationParams, ProviderParams):
    """Parameters of the code SFT recipe (the Prefect UI shows them as a form)."""

    out: str = Field("out/code-sft", description="output directory (published atomically)")
    n_problems: int = Field(8, ge=1, le=1_000_000, description="problems to generate")
    topics_file: str | None = Field(None, description="one topic per line (default: built-in list)")
    snippets: str | None = Field(
        None, description="file or folder of code snippets to seed problems"
    )
    difficulties: list[str] = Field(
        ["easy", "medium"], min_length=1, description="difficulty levels, used in turn"
    )
    n_solutions: int = Field(4, ge=1, le=64, description="candidate solutions per problem (N)")
    max_revision_rounds: int = Field(2, ge=0, le=10, description="revision rounds (K)")
    min_judge_score: int = Field(2, ge=0, le=2, description="judge passes needed of 2")
    lint_policy: Literal["revise", "reject", "report"] = Field(
        "revise", description="lint findings: revise them, reject the candidate, or only report"
    )
    sandbox: SandboxKind = Field("auto", description="where code runs: auto, docker or bwrap")
    timeout_s: float = Field(10.0, gt=0, le=600, description="wall time per execution")
    memory_mb: int = Field(512, ge=64, le=16384, description="memory per execution")
    solution_max_tokens: int = Field(
        600, ge=64, le=32768, description="output budget per solution or revision"
    )
    shard_size: int = Field(16, ge=1, le=100_000, description="records per task run")
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


def plan(params: CodeSFTParams) -> Plan:
    """Check everything that can be checked before a request is made, and build each
    stage's configuration. Raises a clear error for any problem."""
    from tasks.sandbox.select import get_sandbox

    topics = load_topics(params.topics_file)
    snippets = load_snippets(params.snippets)
    check_suites(SUITES)
    get_sandbox(params.sandbox)  # refuses to go on without a sandbox
    gen, judge = params.generator(), params.judge()
    for spec in {gen.model_dump_json(): gen, judge.model_dump_json(): judge}.values():
        client_for(spec).check()
    seed = params.seed
    return Plan(
        seeds=_seeds(params, topics, snippets),
        problems=llm_config(gen, "code_sft/problem", seed=seed),
        unique=ExactDedupConfig(fields=["problem"]),
        solutions=SolutionsConfig(
            llm=llm_config(
                gen, "code_sft/solution", seed=seed, max_tokens=params.solution_max_tokens
            ),
            n=params.n_solutions,
        ),
        static=StaticConfig(lint_policy=params.lint_policy),
        execute=ExecuteConfig(
            revision=llm_config(
                gen, "code_sft/revision", seed=seed, max_tokens=params.solution_max_tokens
            )
            if params.max_revision_rounds
            else None,
            max_rounds=params.max_revision_rounds,
            sandbox=params.sandbox,
            strict_lint=params.lint_policy == "revise",
            limits=Limits(
                wall_s=params.timeout_s, cpu_s=params.timeout_s, memory_mb=params.memory_mb
            ),
        ),
        judge=JudgeConfig(
            llm=llm_config(judge, "code_sft/judge"), min_score=params.min_judge_score
        ),
        dedup=ExactDedupConfig(fields=["problem", "solution"], strip_comments=True),
        curation=plan_curation(
            params,
            fields=["problem", "solution"],
            semantic_field="problem",
            score_field="judge.score",
        ),
    )


def _seeds(params: CodeSFTParams, topics: list[str], snippets: list[str]) -> Iterator[dict]:
    return seed_rows(params.n_problems, topics, params.difficulties, snippets)


def to_example(row: dict[str, Any]) -> dict[str, Any]:
    """A kept candidate as a chat example: user asks the problem, assistant answers with
    the solution (its reasoning in comments) and any explanation it wrote."""
    answer = f"```python\n{row['solution'].rstrip()}\n```"
    if row.get("explanation"):
        answer = f"{answer}\n\n{row['explanation']}"
    return {
        "id": row["id"],
        "messages": [
            {"role": "user", "content": row["problem"]},
            {"role": "assistant", "content": answer},
        ],
        "metadata": {
            "problem_id": row["problem_id"],
            "topic": row.get("topic", ""),
            "difficulty": row.get("difficulty", ""),
            "tests": row["tests"],
            "revision_rounds": row.get("revision_rounds", 0),
            "attempts": row.get("attempts", []),
            "judge": row.get("judge", {}),
            "lint": row.get("lint", []),
            "sandbox": row.get("backend", ""),
            "provenance": row.get("provenance", {}),
        },
    }


def publish_code_sft(
    run: Run, out_dir: str, final: StageOutput, stages: list[StageOutput]
) -> dict[str, Any]:
    return publish_recipe(
        run,
        out_dir,
        final,
        stages,
        to_example,
        extra={"preferences.jsonl": preference_pairs(final, stages)},
        summary=revision_summary(out_dir, final, stages),
    )
