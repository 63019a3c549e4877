"""Math word problems: topics → the LLM writes a problem, a worked solution, a program
and its answer → exact dedup → static checks → the program runs in the sandbox and must
compute the stated answer → optional judge (well-posed?) → publish."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.registry import Recipe
from tasks.curation.exact import exact_dedup_stage
from tasks.pipeline.run import Run
from tasks.recipes.math_word_problems.recipe import MathParams, plan, to_example
from tasks.recipes.math_word_problems.stages import (
    COHERENT,
    EXECUTE,
    JUDGE,
    PROBLEMS,
    SOLVE,
    STATIC,
)

RECIPE = Recipe(
    name="math-word-problems",
    module=__name__,
    flow_attr="math_word_problems",
    params_path="tasks.recipes.math_word_problems.recipe:MathParams",
    summary="word problems → program computes the answer in the sandbox → must match → judge",
)


@flow(name=RECIPE.name, log_prints=True)
def math_word_problems(params: MathParams = MathParams()) -> dict[str, Any]:  # noqa: B008
    with Run(RECIPE.name, params) as run:  # a failed check is recorded as a failed run
        p = plan(params)  # every check that can fail before money is spent
        seeds = run.inputs(p.seeds)
        # generated problems, or the user's own solved by the model (its answer checked too)
        problems = run.stage(SOLVE if p.own_problems else PROBLEMS, seeds, p.problems)
        unique = run.global_stage(exact_dedup_stage("unique_problems"), problems.kept, p.unique)
        run.gate(unique, "math_word_problems.problems")
        checks = [
            (STATIC, p.static),
            (EXECUTE, p.execute, "math_word_problems.executed"),  # computed == stated
            (COHERENT, None),  # the worked solution reaches the stated answer
        ]
        if p.judge is not None:  # optional, by parameter: is the problem well-posed?
            checks.append((JUDGE, p.judge))
        *_, final = run.chain(unique.kept, *checks)  # shard by shard, gated on the way
        run.gate(final, "math_word_problems.kept")
        return run.publish(final, to_example)
