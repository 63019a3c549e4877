"""`generate`: run a prompt template over a JSON Lines file, one completion per row.

The simplest recipe, and the runtime's smoke test: input → shards → generate (journaled,
concurrent, resumable) → gate → output in input order, every row either completed or
carrying its error.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.registry import Recipe
from tasks.pipeline.run import Run
from tasks.recipes.generate.recipe import (
    GenerateParams,
    OrderedOutput,
    plan,
    publish_generate,
)
from tasks.recipes.generate.stages import GENERATE

RECIPE = Recipe(
    name="generate",
    module=__name__,
    flow_attr="generate",
    params_path="tasks.recipes.generate.recipe:GenerateParams",
    summary="a prompt template over a JSON Lines file, one completion per row, in order",
)


@flow(name=RECIPE.name, log_prints=True)
def generate(params: GenerateParams = GenerateParams()) -> dict[str, Any]:  # noqa: B008
    with Run(RECIPE.name, params) as run:  # a failed check is recorded as a failed run
        p = plan(params)  # every check that can fail before money is spent
        with OrderedOutput(params.out) as written:
            rows = run.inputs(p.rows, total=p.n_rows)
            output = run.stage(GENERATE, rows, p.generate, on_shard=written)  # written as done
            run.gate(output, "generate.completions")
            return publish_generate(run, output, written)
