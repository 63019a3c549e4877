"""Python → PHP translation: verified Python → the Python passes again → translate →
`php -l` and the PHP tests in the sandbox, revised from the errors → the PHP tests assert
at least as much → an LLM compares PHP and Python → publish."""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.code.php_stages import COVERAGE, FAITHFULNESS, PYTHON_CHECK, TRANSLATE
from tasks.code.php_translation import PHPTranslationParams, plan, publish_php_translation
from tasks.code.stages import EXECUTE
from tasks.pipeline import Run
from tasks.stage import write_input_shards


@flow(name="php-translation", log_prints=True)
def php_translation(params: PHPTranslationParams = PHPTranslationParams()) -> dict[str, Any]:  # noqa: B008
    p = plan(params)  # every check that can fail before money is spent
    run = Run("php-translation", params)
    with run.guard(params.out):
        inputs = write_input_shards(p.rows, params.shard_size, "php-translation")
        python = run.stage(PYTHON_CHECK, inputs, p.python_check)
        run.gate(python, "php_translation.python")
        translated = run.stage(TRANSLATE, python.kept, p.translate)
        run.gate(translated, "php_translation.translated")
        executed = run.stage(EXECUTE, translated.kept, p.execute)  # php -l, tests, revision
        run.gate(executed, "php_translation.executed")
        covered = run.stage(COVERAGE, executed.kept, p.coverage)
        final = run.stage(FAITHFULNESS, covered.kept, p.faithfulness)
        run.gate(final, "php_translation.kept")
        stages = [python, translated, executed, covered, final]
        return publish_php_translation(run, params.out, final, stages)
