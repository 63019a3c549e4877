"""The `generate` stage: one completion per row from a prompt template.

A row whose request finally fails is not dropped: it leaves the stage as a rejection
carrying its error, and the `generate` command writes it to the output with that error.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from tasks import prompts
from tasks.clients import client_for
from tasks.llm.base import ChatResult, GenerationParams, ProviderSpec
from tasks.stage import Stage, StageContext, StageResult


class LLMConfig(BaseModel):
    """What an LLM stage needs: provider, template (name and pinned version), sampling."""

    provider: ProviderSpec
    template: str
    template_version: str
    params: GenerationParams


def provenance(
    ctx: StageContext, config: LLMConfig, result: ChatResult, round_: int | None = None
) -> dict[str, Any]:
    return {
        "run_id": ctx.run.run_id,
        "recipe": ctx.run.recipe,
        "stage": ctx.stage,
        "template": config.template,
        "template_version": config.template_version,
        "provider": result.provider or config.provider.kind,
        "model": result.model or config.provider.model,
        "params": config.params.model_dump(),
        "round": ctx.run.round if round_ is None else round_,
        "request_key": result.key,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def generate_batch(rows: list[dict[str, Any]], config: LLMConfig, ctx: StageContext) -> StageResult:
    template = load_pinned(config)
    client = client_for(config.provider)
    requests = [template.request(row, params=config.params) for row in rows]
    results = client.complete_many(requests, on_result=lambda _i, _r: ctx.progress())
    out = StageResult()
    out.add_calls(results, template.name, template.version)
    for row, result in zip(rows, results, strict=True):
        record = dict(row)
        record["provenance"] = provenance(ctx, config, result)
        if result.ok:
            record["completion"] = result.text
            out.kept.append(record)
        else:
            record["error"] = result.error
            out.reject(record, ctx.stage, f"request failed: {result.error}")
    return out


GENERATE = Stage(name="generate", fn=generate_batch)


def llm_config(provider: ProviderSpec, template_name: str, **overrides: Any) -> LLMConfig:
    """Load a template and pin its version; ``overrides`` replace its default params."""
    template = prompts.load(template_name)
    given = {k: v for k, v in overrides.items() if v is not None}
    return LLMConfig(
        provider=provider,
        template=template.name,
        template_version=template.version,
        params=GenerationParams(**{**template.params.model_dump(), **given}),
    )


def load_pinned(config: LLMConfig) -> prompts.PromptTemplate:
    """The template a config was made with; refuses one whose version changed since."""
    template = prompts.load(config.template)
    if template.version != config.template_version:
        raise prompts.PromptError(
            f"template {config.template!r} changed from v{config.template_version} "
            f"to v{template.version} during the run"
        )
    return template


GenerateConfig = LLMConfig  # the generate command's name for it
