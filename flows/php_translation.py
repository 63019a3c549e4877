"""Python → PHP translation: verified Python → the Python passes again → translate →
`php -l` and the PHP tests in the sandbox, revised from the errors → the PHP tests assert
at least as much → an LLM compares PHP and Python → publish."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.registry import Recipe
from tasks.execution.revise import EXECUTE
from tasks.pipeline.run import Run
from tasks.recipes.php_translation.recipe import PHPTranslationParams, plan, publish_php
from tasks.recipes.php_translation.stages import COVERAGE, FAITHFULNESS, PYTHON_CHECK, TRANSLATE

RECIPE = Recipe(
    name="php-translation",
    module=__name__,
    flow_attr="php_translation",
    params_path="tasks.recipes.php_translation.recipe:PHPTranslationParams",
    summary="verified Python → PHP → php -l → sandbox → revision → coverage → faithfulness",
)


@flow(name=RECIPE.name, log_prints=True)
def php_translation(params: PHPTranslationParams = PHPTranslationParams()) -> dict[str, Any]:  # noqa: B008
    with Run(RECIPE.name, params) as run:  # a failed check is recorded as a failed run
        p = plan(params)  # every check that can fail before money is spent
        inputs = run.inputs(p.rows)
        python = run.stage(PYTHON_CHECK, inputs, p.python_check)
        run.gate(python, "php_translation.python")
        # each shard goes through these as soon as it can (gated on the way)
        *_, final = run.chain(
            python.kept,
            (TRANSLATE, p.translate, "php_translation.translated"),
            (EXECUTE, p.execute, "php_translation.executed"),  # php -l, tests, revision
            (COVERAGE, p.coverage),
            (FAITHFULNESS, p.faithfulness),
        )
        run.gate(final, "php_translation.kept")
        return publish_php(run, final)
