"""Parameters, plan and output of the `generate` recipe (its DAG is in flows/generate.py):
a prompt template over a JSON Lines file, one completion per row, written in input order,
every row either completed or carrying its error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, Field

from tasks.core.tables import check_table, read_table
from tasks.gates.gx import check_suites
from tasks.llm import prompts
from tasks.pipeline.llm_stage import LLMConfig
from tasks.pipeline.outcome import check_kept
from tasks.pipeline.params import ProviderParams
from tasks.pipeline.run import Run
from tasks.pipeline.stage import ShardOutput, StageOutput
from tasks.store.publish import JsonlSink
from tasks.store.shards import iter_shards

SUITES = ["generate.completions"]


class GenerateParams(ProviderParams):
    """Parameters of `winnow generate` (and of its form in the Prefect UI)."""

    prompt: str = Field("instruction", description="template name in prompts/ (or a .toml path)")
    input: str = Field(
        "examples/instructions.jsonl",
        description="a table (JSON Lines, Parquet, CSV or a saved datasets folder); each "
        "row's fields fill the template",
    )
    out: str = Field("out/generate.jsonl", description="output JSON Lines file (atomic)")
    temperature: float | None = Field(
        None, ge=0, le=2, description="override the template's (default: the template's)"
    )
    max_tokens: int | None = Field(
        None, ge=1, description="override the template's (default: the template's)"
    )
    shard_size: int = Field(64, ge=1, le=100_000, description="records per task run")


class Plan(BaseModel):
    rows: Any = None  # an iterator of input rows (not serialised)
    n_rows: int
    generate: LLMConfig


def plan(params: GenerateParams) -> Plan:
    """Every check that can fail before money is spent: template, input, provider."""
    template = prompts.load(params.prompt)
    n_rows = check_table(params.input, required=template.fields)
    check_suites(SUITES)
    params.check_providers(judge=False)
    config = params.generator_llm(
        params.prompt, temperature=params.temperature, max_tokens=params.max_tokens
    )
    return Plan(rows=_indexed(params.input), n_rows=n_rows, generate=config)


def _indexed(path: str) -> Iterator[dict[str, Any]]:
    for number, row in read_table(path):
        yield {"_index": number - 1, **row}


def in_input_order(shard: ShardOutput) -> list[dict[str, Any]]:
    """One shard's kept and rejected rows back in input order, ``_index`` dropped."""
    rows = list(iter_shards([shard.kept.path]))
    rows += [r["record"] for r in iter_shards([shard.rejected.path])]
    rows.sort(key=lambda r: r["_index"])
    for row in rows:
        row.pop("_index", None)
    return rows


class OrderedOutput:
    """The output file, written shard by shard as they complete (in input order: a
    shard that completes early waits for those before it), published whole at the end."""

    def __init__(self, path: str) -> None:
        self.sink = JsonlSink(path)
        self.waiting: dict[int, ShardOutput] = {}
        self.next = 0

    def __call__(self, index: int, shard: ShardOutput) -> None:
        self.waiting[index] = shard
        while self.next in self.waiting:
            self.sink.write(in_input_order(self.waiting.pop(self.next)))
            self.next += 1

    def __enter__(self) -> OrderedOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sink.__exit__(*exc)


def publish_generate(run: Run, output: StageOutput, written: OrderedOutput) -> dict[str, Any]:
    """Make the output file, written as shards completed, visible at ``out`` at once.
    A preview leaves it unwritten (the sink's temporary file goes) and projects instead."""
    if run.preview:
        return run.preview_document(output, lambda row: row)
    written.sink.commit()
    run.published = True
    summary = {
        **run.funnel_document(output.n_kept),
        "out": str(written.sink.path),
        "rows": output.n_in,
        "completed": output.n_kept,
        "failed": output.n_rejected,
    }
    kept = ({k: v for k, v in r.items() if k != "_index"} for r in output.kept_rows())
    summary["report"] = run.report_beside(str(written.sink.path), summary, kept)
    check_kept(output.n_kept, run.min_kept, str(written.sink.path))  # published, then failed
    return summary
