"""Parameters, plan and examples of the math word-problem recipe (its DAG is in
flows/math_word_problems.py)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from tasks.core.paths import prompts_dir
from tasks.core.seeds import load_topics, seed_rows
from tasks.curation.exact import ExactDedupConfig
from tasks.execution.params import SandboxParams
from tasks.gates.gx import check_suites
from tasks.pipeline.llm_stage import LLMConfig
from tasks.pipeline.params import CardParams, OwnProblemsParams, ProviderParams
from tasks.recipes.math_word_problems.answers import show
from tasks.recipes.math_word_problems.inputs import check_problems, problem_rows
from tasks.recipes.math_word_problems.stages import ExecuteConfig, StaticConfig

SUITES = [
    "math_word_problems.problems",
    "math_word_problems.executed",
    "math_word_problems.kept",
]

# Applied by `winnow run math-word-problems` on the embedded model when left unset.
SMALL_LOCAL_DEFAULTS = {"n_problems": 2}


class MathParams(SandboxParams, OwnProblemsParams, ProviderParams, CardParams):
    """Parameters of the math word-problem recipe (the Prefect UI shows them as a form)."""

    out: str = Field(
        "out/math-word-problems", description="output directory (published atomically)"
    )
    n_problems: int = Field(8, ge=1, le=1_000_000, description="problems to generate")
    answer_field: str | None = Field(
        None,
        description="a field of `problems` with reference answers (a number, or a worked "
        "solution ending in '#### N'): a computed answer must match it too",
    )
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
    memory_mb: int = Field(256, ge=64, le=16384, description="memory per program")
    max_tokens: int = Field(700, ge=64, le=32768, description="output budget per problem")
    seed: int = Field(0, description="base sampling seed")


class Plan(BaseModel):
    seeds: Any = None  # an iterator of seed rows (not serialised)
    own_problems: bool = False  # the user's problems, solved (SOLVE), or generated ones
    problems: LLMConfig
    unique: ExactDedupConfig
    static: StaticConfig
    execute: ExecuteConfig
    judge: LLMConfig | None


def plan(params: MathParams) -> Plan:
    """Every check that can fail before a request is made, and each stage's config."""
    default_topics = prompts_dir() / "math_word_problems" / "topics.txt"
    topics = load_topics(params.topics_file, default=default_topics)
    check_suites(SUITES)
    params.check_sandbox()
    params.check_providers(judge=params.well_posed_judge)
    template, seeds = "math_word_problems/problem", None
    if params.problems:
        fields = (params.problems, params.problem_field, params.answer_field, params.limit)
        check_problems(*fields)
        template, seeds = "math_word_problems/solve", problem_rows(*fields)
    return Plan(
        seeds=seeds or seed_rows(params.n_problems, topics, params.difficulties),
        own_problems=seeds is not None,
        problems=params.generator_llm(template, seed=params.seed, max_tokens=params.max_tokens),
        unique=ExactDedupConfig(fields=["problem"]),
        static=StaticConfig(),
        execute=ExecuteConfig(
            sandbox=params.sandbox,
            tolerance=params.tolerance,
            limits=params.limits(),
        ),
        judge=params.judge_llm("math_word_problems/judge") if params.well_posed_judge else None,
    )


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
            "source_id": row.get("source_id", ""),
            "topic": row.get("topic", ""),
            "difficulty": row.get("difficulty", ""),
            "program": row["program"],
            "computed_answer": show(float(row["computed_answer"])),
            "stated_answer": row["stated_answer"],
            "passed_reference_answer": bool(row.get("reference_answer")),
            "judge": row.get("judge") or {},
            "sandbox": row.get("sandbox", ""),
            "provenance": row.get("provenance", {}),
        },
    }
