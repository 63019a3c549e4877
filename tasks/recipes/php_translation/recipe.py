"""Parameters, plan and examples of the Python → PHP translation recipe (its DAG is in
flows/php_translation.py). Llama 3 turned verified Python into PHP and kept only what
parsed and ran; here the PHP must also test at least as much as the Python did, and an
LLM compares the two."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from tasks.curation.coherence import drop_test_requests
from tasks.execution.params import SandboxParams
from tasks.execution.revise import ExecuteConfig
from tasks.gates.gx import check_suites
from tasks.pipeline.llm_stage import LLMConfig
from tasks.pipeline.params import CardParams, ProviderParams
from tasks.pipeline.publish import revision_summary
from tasks.pipeline.run import Run
from tasks.pipeline.stage import StageOutput
from tasks.recipes.php_translation.inputs import (
    DEFAULT_SOURCE_NAME,
    check_source,
    iter_examples,
    resolve_source,
)
from tasks.recipes.php_translation.stages import (
    CoverageConfig,
    FaithfulnessConfig,
    PythonCheckConfig,
)

SUITES = [
    "php_translation.python",
    "php_translation.translated",
    "php_translation.executed",
    "php_translation.kept",
]

# Applied by `winnow run php-translation` on the embedded model when left unset.
SMALL_LOCAL_DEFAULTS = {"max_revision_rounds": 1, "limit": 3, "max_tokens": 450}


class PHPTranslationParams(SandboxParams, ProviderParams, CardParams):
    """Parameters of the PHP translation recipe (the Prefect UI shows them as a form)."""

    source: str = Field(
        DEFAULT_SOURCE_NAME,
        description="verified Python: a code SFT run id, its out dir, or a JSON Lines file",
    )
    limit: int | None = Field(None, ge=1, description="translate only the first N rows")
    out: str = Field("out/php-translation", description="output directory")
    max_revision_rounds: int = Field(2, ge=0, le=10, description="revision rounds (K)")
    min_assertion_ratio: float = Field(
        1.0, ge=0, le=10, description="PHP assertions needed per Python assert"
    )
    faithfulness: Literal["reject", "record"] = Field(
        "reject", description="reject: an unfaithful verdict drops the row; record: keep it"
    )
    max_tokens: int = Field(700, ge=64, le=32768, description="per translation or revision")
    seed: int = Field(0, description="sampling seed")


class Plan(BaseModel):
    rows: Any = None  # an iterator of input rows (not serialised)
    source: str
    n_rows: int
    python_check: PythonCheckConfig
    translate: LLMConfig
    execute: ExecuteConfig
    coverage: CoverageConfig
    faithfulness: FaithfulnessConfig


def plan(params: PHPTranslationParams) -> Plan:
    """Every check that can fail before a request is made: the source resolves and every
    row reads, the suites parse, a sandbox exists, the providers answer."""
    source = resolve_source(params.source)
    n_rows = check_source(source, params.limit)
    check_suites(SUITES)
    params.check_sandbox()
    params.check_providers()
    limits = params.limits()
    tokens = {"seed": params.seed, "max_tokens": params.max_tokens}
    return Plan(
        rows=_rows(source, params.limit),
        source=str(source),
        n_rows=n_rows,
        python_check=PythonCheckConfig(sandbox=params.sandbox, limits=limits),
        translate=params.generator_llm("php_translation/translate", **tokens),
        execute=ExecuteConfig(
            language="php",
            revision=params.generator_llm("php_translation/revision", **tokens)
            if params.max_revision_rounds
            else None,
            max_rounds=params.max_revision_rounds,
            sandbox=params.sandbox,
            strict_lint=False,
            limits=limits,
        ),
        coverage=CoverageConfig(min_ratio=params.min_assertion_ratio),
        faithfulness=FaithfulnessConfig(
            llm=params.judge_llm("php_translation/faithfulness"), policy=params.faithfulness
        ),
    )


def _rows(source: Path, limit: int | None) -> Iterator[dict[str, Any]]:
    return (e.model_dump() for e in iter_examples(source, limit))


_PYTHON_WORD = re.compile(r"\bPython\b")


def php_problem(problem: str) -> str:
    """The user turn: the problem asked in PHP (the word Python, where the problem names
    the language, becomes PHP). The answer is the PHP solution alone (its tests go to
    the metadata), so a sentence asking for tests or a check function is left out."""
    asked = drop_test_requests(_PYTHON_WORD.sub("PHP", problem))
    return f"{asked.rstrip()}\n\nWrite the solution in PHP."


def to_example(row: dict[str, Any]) -> dict[str, Any]:
    """A kept translation as a chat example: user asks the problem in PHP, assistant
    answers with the PHP solution; the tests and the Python origin go in metadata."""
    return {
        "id": row["id"],
        "messages": [
            {"role": "user", "content": php_problem(row["problem"])},
            {"role": "assistant", "content": f"```php\n{row['solution'].rstrip()}\n```"},
        ],
        "metadata": {
            "language": "php",
            "source_id": row.get("source_id", ""),
            "topic": row.get("topic", ""),
            "difficulty": row.get("difficulty", ""),
            "tests": row["tests"],
            "python_solution": row["python_solution"],
            "python_tests": row["python_tests"],
            "python_assertions": row.get("python_assertions", 0),
            "php_assertions": row.get("php_assertions", 0),
            "revision_rounds": row.get("revision_rounds", 0),
            "attempts": row.get("attempts", []),
            "faithfulness": row.get("faithfulness", {}),
            "sandbox": row.get("backend", ""),
            "provenance": row.get("provenance", {}),
        },
    }


def publish_php(run: Run, final: StageOutput) -> dict[str, Any]:
    return run.publish(final, to_example, summary=revision_summary(run.outputs, final))
