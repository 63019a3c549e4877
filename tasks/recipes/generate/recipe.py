"""Parameters, plan and output of the `generate` recipe (its DAG is in flows/generate.py):
a prompt template over a JSON Lines file, one completion per row, written in input order,
every row either completed or carrying its error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tasks.core.jsonl import check_jsonl, iter_jsonl
from tasks.gates.gx import check_suites
from tasks.llm import prompts
from tasks.pipeline.llm_stage import LLMConfig
from tasks.pipeline.params import ProviderParams
from tasks.pipeline.run import Run
from tasks.pipeline.stage import ShardOutput, StageOutput
from tasks.store.publish import write_jsonl_atomic
from tasks.store.shards import iter_shards

SUITES = ["generate.completions"]


class GenerateParams(ProviderParams):
    """Parameters of `winnow generate` (and of its form in the Prefect UI)."""

    prompt: str = Field("instruction", description="template name in prompts/ (or a .toml path)")
    input: str = Field(
        "examples/instructions.jsonl",
        description="JSON Lines file; each row's fields fill the template",
    )
    out: str = Field("out/generate.jsonl", description="output JSON Lines file (atomic)")
    temperature: float | None = Field(None, ge=0, le=2, description="override the template's")
    max_tokens: int | None = Field(None, ge=1, description="override the template's")
    shard_size: int = Field(64, ge=1, le=100_000, description="records per task run")


class Plan(BaseModel):
    rows: Any = None  # an iterator of input rows (not serialised)
    n_rows: int
    generate: LLMConfig


def plan(params: GenerateParams) -> Plan:
    """Every check that can fail before money is spent: template, input, provider."""
    template = prompts.load(params.prompt)
    n_rows = check_jsonl(params.input, required=template.fields)
    check_suites(SUITES)
    params.check_providers(judge=False)
    config = params.generator_llm(
        params.prompt, temperature=params.temperature, max_tokens=params.max_tokens
    )
    return Plan(rows=_indexed(params.input), n_rows=n_rows, generate=config)


def _indexed(path: str) -> Iterator[dict[str, Any]]:
    for index, row in enumerate(iter_jsonl(path)):
        yield {"_index": index, **row}


def _in_input_order(shards: list[ShardOutput]) -> Iterator[dict[str, Any]]:
    """Merge each shard's kept and rejected rows back into input order, shard by shard."""
    for shard in shards:
        rows = list(iter_shards([shard.kept.path]))
        rows += [r["record"] for r in iter_shards([shard.rejected.path])]
        rows.sort(key=lambda r: r["_index"])
        for row in rows:
            row.pop("_index", None)
            yield row


def publish_generate(run: Run, output: StageOutput) -> dict[str, Any]:
    """Write every row, completed or failed, to ``out`` in input order (atomically)."""
    out = str(run.params.out)  # type: ignore[attr-defined]
    write_jsonl_atomic(Path(out), _in_input_order(output.shards))
    return {
        **run.funnel_document(output.n_kept),
        "out": out,
        "rows": output.n_in,
        "completed": output.n_kept,
        "failed": output.n_rejected,
    }
