"""`generate`: run a prompt template over a JSON Lines file, one completion per row.

The simplest recipe, and the runtime's smoke test: input → shards → generate (journaled,
concurrent, resumable) → gate → output in input order, every row either completed or
carrying its error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from pydantic import Field

from tasks import prompts
from tasks.generation import GENERATE, GenerateConfig, llm_config
from tasks.jsonl import check_jsonl, iter_jsonl
from tasks.llm.base import ProviderKind, ProviderSpec
from tasks.pipeline import Run
from tasks.runners import RuntimeParams
from tasks.stage import write_input_shards
from tasks.store.publish import write_jsonl_atomic
from tasks.store.shards import iter_shards


class GenerateParams(RuntimeParams):
    """Parameters of `winnow generate` (and of its form in the Prefect UI)."""

    prompt: str = Field("instruction", description="template name in prompts/ (or a .toml path)")
    input: str = Field(description="JSON Lines file; each row's fields fill the template")
    out: str = Field(description="output JSON Lines file (written atomically)")
    provider: ProviderKind = Field(
        "local", description="local, openai, anthropic or openai-compatible"
    )
    model: str = Field("", description="model name; empty: the provider's default")
    base_url: str | None = Field(None, description="server URL for openai-compatible providers")
    concurrency: int = Field(16, ge=1, le=4096, description="max requests in flight")
    max_retries: int = Field(6, ge=0, le=50, description="retries of a failing request")
    shard_size: int = Field(64, ge=1, le=100_000, description="rows per task run")
    temperature: float | None = Field(None, ge=0, le=2, description="override the template's")
    max_tokens: int | None = Field(None, ge=1, description="override the template's")

    def provider_spec(self) -> ProviderSpec:
        return ProviderSpec(
            kind=self.provider,
            model=self.model,
            base_url=self.base_url,
            max_concurrency=self.concurrency,
            max_retries=self.max_retries,
        )


def prepare(params: GenerateParams) -> tuple[prompts.PromptTemplate, GenerateConfig, int]:
    """Every check that can fail before money is spent: template, input, provider."""
    from tasks.clients import client_for

    template = prompts.load(params.prompt)
    n_rows = check_jsonl(params.input, required=template.fields)
    config = llm_config(
        params.provider_spec(),
        params.prompt,
        temperature=params.temperature,
        max_tokens=params.max_tokens,
    )
    client_for(config.provider).check()
    return template, config, n_rows


def _indexed(path: str):
    for index, row in enumerate(iter_jsonl(path)):
        yield {"_index": index, **row}


def _in_input_order(shards) -> Any:
    """Merge each shard's kept and rejected rows back into input order, shard by shard."""
    for shard in shards:
        rows = list(iter_shards([shard.kept.path]))
        rows += [r["record"] for r in iter_shards([shard.rejected.path])]
        rows.sort(key=lambda r: r["_index"])
        for row in rows:
            row.pop("_index", None)
            yield row


@flow(name="generate", log_prints=True)
def generate_flow(params: GenerateParams) -> dict[str, Any]:
    template, config, n_rows = prepare(params)
    run = Run("generate", params)
    try:
        with run.location.active():  # inputs go to the run's storage too
            shards = write_input_shards(_indexed(params.input), params.shard_size, "generate")
        output = run.stage(GENERATE, shards, config)
        run.gate(output, "generate.completions")
        write_jsonl_atomic(Path(params.out), _in_input_order(output.shards))
    except BaseException as exc:
        run.finish("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    run.finish("completed", out=params.out)
    return {
        "run_id": run.run_id,
        "rows": n_rows,
        "completed": output.n_kept,
        "failed": output.n_rejected,
        "out": params.out,
        "funnel": [r.model_dump() for r in run.funnel],
        "costs": run.costs(),
    }
