"""Parameters, plan and publishing of the math word-problem recipe (its DAG is in
flows/math_word_problems.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, Field

from tasks.code.sft_inputs import load_topics, seed_rows
from tasks.dedup import ExactDedupConfig
from tasks.gates.suites import check_suites
from tasks.generation import LLMConfig, llm_config
from tasks.math.answers import show
from tasks.math.stages import ExecuteConfig, StaticConfig
from tasks.pipeline import Run
from tasks.publishing import publish_recipe
from tasks.recipe_params import ProviderParams
from tasks.sandbox.base import Limits, SandboxKind
from tasks.stage import StageOutput
from winnow.paths import prompts_dir

SUITES = [
    "math_word_problems.problems",
    "math_word_problems.executed",
    "math_word_problems.kept",
]

# Applied by `winnow run math-word-problems` on the embedded model when left unset.
SMALL_LOCAL_DEFAULTS = {"n_problems": 2}


class MathParams(ProviderParams):
    """Parameters of the math word-problem recipe (the Prefect UI shows them as a form)."""

    out: str = Field(
        "out/math-word-problems", description="output directory (published atomically)"
    )
    n_problems: int = Field(8, ge=1, le=1_000_000, description="problems to generate")
    topics_file: str | None = Field(
        None, description="one topic per line (default: prompts/math_word_problems/topics.txt)"
    )
    difficulties: list[str] = Field(
        ["grade 4", "grade 7"], min_length=1, description="difficulty levels, used in turn"
    )
    tolerance: float = Field(
        1e-6, ge=0, le=0.5, description="relative tolerance between computed and stated answer"
    )
    well_posed_judge: bool = Field(
        True, description="ask the judge model whether each problem is well-posed"
    )
    sandbox: SandboxKind = Field("auto", description="where programs run: auto, docker or bwrap")
    timeout_s: float = Field(10.0, gt=0, le=600, description="wall time per program")
    memory_mb: int = Field(256, ge=64, le=16384, description="memory per program")
    max_tokens: int = Field(700, ge=64, le=32768, description="output budget per problem")
    shard_size: int = Field(16, ge=1, le=100_000, description="records per task run")
    seed: int = Field(0, description="base sampling seed")


class Plan(BaseModel):
    seeds: Any = None  # an iterator of seed rows (not serialised)
    problems: LLMConfig
    unique: ExactDedupConfig
    static: StaticConfig
    execute: ExecuteConfig
    judge: LLMConfig | None


def plan(params: MathParams) -> Plan:
    """Every check that can fail before a request is made, and each stage's config."""
    from tasks.sandbox.select import get_sandbox

    topics = load_topics(params.topics_file or str(prompts_dir() / "math_word_problems/topics.txt"))
    check_suites(SUITES)
    get_sandbox(params.sandbox)  # refuses to go on without a sandbox
    params.check_providers()
    gen, judge = params.generator(), params.judge()
    return Plan(
        seeds=_seeds(params, topics),
        problems=llm_config(
            gen, "math_word_problems/problem", seed=params.seed, max_tokens=params.max_tokens
        ),
        unique=ExactDedupConfig(fields=["problem"]),
        static=StaticConfig(),
        execute=ExecuteConfig(
            sandbox=params.sandbox,
            tolerance=params.tolerance,
            limits=Limits(
                wall_s=params.timeout_s, cpu_s=params.timeout_s, memory_mb=params.memory_mb
            ),
        ),
        judge=llm_config(judge, "math_word_problems/judge") if params.well_posed_judge else None,
    )


def _seeds(params: MathParams, topics: list[str]) -> Iterator[dict[str, Any]]:
    return seed_rows(params.n_problems, topics, params.difficulties, [])


def to_example(row: dict[str, Any]) -> dict[str, Any]:
    """A kept problem as a chat example: the user asks it, the assistant works it out."""
    answer = f"{row['solution'].rstrip()}\n\nAnswer: {row['stated_answer']}"
    return {
        "id": row["id"],
        "messages": [
            {"role": "user", "content": row["problem"]},
            {"role": "assistant", "content": answer},
        ],
        "metadata": {
            "topic": row.get("topic", ""),
            "difficulty": row.get("difficulty", ""),
            "program": row["program"],
            "computed_answer": show(float(row["computed_answer"])),
            "stated_answer": row["stated_answer"],
            "judge": row.get("judge") or {},
            "sandbox": row.get("sandbox", ""),
            "provenance": row.get("provenance", {}),
        },
    }


def publish_math(
    run: Run, out_dir: str, final: StageOutput, stages: list[StageOutput]
) -> dict[str, Any]:
    return publish_recipe(run, out_dir, final, stages, to_example, summary={"out": out_dir})
