"""Parameters, plan and publishing of the Python → PHP translation recipe (its DAG is in
flows/php_translation.py). Llama 3 turned verified Python into PHP and kept only what
parsed and ran; here the PHP must also test at least as much as the Python did, and an
LLM compares the two."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from tasks.clients import client_for
from tasks.code.php_inputs import DEFAULT_SOURCE_NAME, check_source, iter_examples, resolve_source
from tasks.code.php_stages import CoverageConfig, FaithfulnessConfig, PythonCheckConfig
from tasks.code.stages import ExecuteConfig
from tasks.gates.suites import check_suites
from tasks.generation import LLMConfig, llm_config
from tasks.pipeline import Run
from tasks.publishing import publish_recipe, revision_summary
from tasks.recipe_params import ProviderParams
from tasks.sandbox.base import Limits, SandboxKind
from tasks.stage import StageOutput

SUITES = [
    "php_translation.python",
    "php_translation.translated",
    "php_translation.executed",
    "php_translation.kept",
]

# Applied by `winnow run php-translation` on the embedded model when left unset.
SMALL_LOCAL_DEFAULTS = {"max_revision_rounds": 1, "limit": 3, "max_tokens": 450}


class PHPTranslationParams(ProviderParams):
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
    sandbox: SandboxKind = Field("auto", description="where code runs: auto, docker or bwrap")
    timeout_s: float = Field(10.0, gt=0, le=600, description="wall time per execution")
    memory_mb: int = Field(512, ge=64, le=16384, description="memory per execution")
    max_tokens: int = Field(700, ge=64, le=32768, description="per translation or revision")
    shard_size: int = Field(16, ge=1, le=100_000, description="records per task run")
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
    from tasks.sandbox.select import get_sandbox

    source = resolve_source(params.source)
    n_rows = check_source(source, params.limit)
    check_suites(SUITES)
    get_sandbox(params.sandbox)
    gen, judge = params.generator(), params.judge()
    for spec in {gen.model_dump_json(): gen, judge.model_dump_json(): judge}.values():
        client_for(spec).check()
    limits = Limits(wall_s=params.timeout_s, cpu_s=params.timeout_s, memory_mb=params.memory_mb)
    tokens = {"seed": params.seed, "max_tokens": params.max_tokens}
    return Plan(
        rows=_rows(source, params.limit),
        source=str(source),
        n_rows=n_rows,
        python_check=PythonCheckConfig(sandbox=params.sandbox, limits=limits),
        translate=llm_config(gen, "php_translation/translate", **tokens),
        execute=ExecuteConfig(
            language="php",
            revision=llm_config(gen, "php_translation/revision", **tokens)
            if params.max_revision_rounds
            else None,
            max_rounds=params.max_revision_rounds,
            sandbox=params.sandbox,
            strict_lint=False,
            limits=limits,
        ),
        coverage=CoverageConfig(min_ratio=params.min_assertion_ratio),
        faithfulness=FaithfulnessConfig(
            llm=llm_config(judge, "php_translation/faithfulness"), policy=params.faithfulness
        ),
    )


def _rows(source: Path, limit: int | None) -> Iterator[dict[str, Any]]:
    return (e.model_dump() for e in iter_examples(source, limit))


_PYTHON_WORD = re.compile(r"\bPython\b")


def php_problem(problem: str) -> str:
    """The user turn: the problem asked in PHP (the word Python, where the problem names
    the language, becomes PHP)."""
    return f"{_PYTHON_WORD.sub('PHP', problem).rstrip()}\n\nWrite the solution in PHP."


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


def publish_php_translation(
    run: Run, out_dir: str, final: StageOutput, stages: list[StageOutput]
) -> dict[str, Any]:
    return publish_recipe(
        run,
        out_dir,
        final,
        stages,
        to_example,
        summary=revision_summary(out_dir, final, stages),
    )
