"""Code SFT: problems → N solutions with tests → static checks → execution with revision
→ coherence → judge → dedup → publish. Llama 3's recipe for code data verified by execution."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.registry import Recipe
from tasks.curation.exact import exact_dedup_stage
from tasks.curation.optional import curate, rubric_feedback_of
from tasks.execution.revise import EXECUTE
from tasks.pipeline.run import Run
from tasks.recipes.code_sft.recipe import (
    CodeSFTParams,
    plan,
    problem_diversity,
    publish_code_sft,
)
from tasks.recipes.code_sft.stages import COHERENT, JUDGE, PROBLEMS, SOLUTIONS, STATIC

RECIPE = Recipe(
    name="code-sft",
    module=__name__,
    flow_attr="code_sft",
    params_path="tasks.recipes.code_sft.recipe:CodeSFTParams",
    summary="problems → solutions with tests → lint → sandbox → revision → judge",
)


@flow(name=RECIPE.name, log_prints=True)
def code_sft(params: CodeSFTParams = CodeSFTParams()) -> dict[str, Any]:  # noqa: B008
    with Run(RECIPE.name, params) as run:  # a failed check is recorded as a failed run
        p = plan(params)  # every check that can fail before money is spent
        seeds = run.inputs(p.seeds)
        problems = run.stage(PROBLEMS, seeds, p.problems)
        unique = run.global_stage(exact_dedup_stage("unique_problems"), problems.kept, p.unique)
        run.gate(unique, "code_sft.problems")
        diversity = problem_diversity(run, unique, p.diversity)  # measured and gated
        # each shard of problems goes through these as soon as it can (gated on the way),
        # so some shards are in the sandbox while others keep the LLM busy
        candidates, static, executed, coherent, judged = run.chain(
            unique.kept,
            (SOLUTIONS, p.solutions, "code_sft.solutions"),
            (STATIC, p.static),
            (EXECUTE, p.execute, "code_sft.executed"),  # run, revise from the errors
            (COHERENT, None),  # request, code, tests and prose agree
            (JUDGE, p.judge),
        )
        unique_final = run.global_stage(exact_dedup_stage("dedup"), judged.kept, p.dedup)
        # optional, by parameter: contamination check, near-duplicate and semantic dedup
        final = curate(run, unique_final, p.curation)
        run.gate(final, "code_sft.kept")
        # optional: each judge criterion against the IFD/utility scores (the judge's
        # rejections scored too, off the funnel)
        feedback = rubric_feedback_of(run, judged, p.curation)
        return publish_code_sft(run, final, diversity, feedback)
