"""Math word problems: topics → the LLM writes a problem, a worked solution, a program
and its answer → exact dedup → static checks → the program runs in the sandbox and must
compute the stated answer → optional judge (well-posed?) → publish."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.registry import Recipe
from tasks.dedup import exact_dedup_stage
from tasks.math.recipe import MathParams, plan, publish_math
from tasks.math.stages import EXECUTE, JUDGE, PROBLEMS, STATIC
from tasks.pipeline import Run
from tasks.stage import write_input_shards

RECIPE = Recipe(
    name="math-word-problems",
    module=__name__,
    flow_attr="math_word_problems",
    params_path="tasks.math.recipe:MathParams",
    summary="word problems → program computes the answer in the sandbox → must match → judge",
)


@flow(name="math-word-problems", log_prints=True)
def math_word_problems(params: MathParams = MathParams()) -> dict[str, Any]:  # noqa: B008
    p = plan(params)  # every check that can fail before money is spent
    run = Run("math-word-problems", params)
    with run.guard(params.out):
        seeds = write_input_shards(p.seeds, params.shard_size, "math-word-problems")
        problems = run.stage(PROBLEMS, seeds, p.problems)
        unique = run.global_stage(exact_dedup_stage("unique_problems"), problems.kept, p.unique)
        run.gate(unique, "math_word_problems.problems")
        static = run.stage(STATIC, unique.kept, p.static)
        executed = run.stage(EXECUTE, static.kept, p.execute)  # computed == stated
        run.gate(executed, "math_word_problems.executed")
        stages = [problems, unique, static, executed]
        if p.judge is not None:  # optional, by parameter: is the problem well-posed?
            stages.append(run.stage(JUDGE, executed.kept, p.judge))
        run.gate(stages[-1], "math_word_problems.kept")
        return publish_math(run, params.out, stages[-1], stages)
