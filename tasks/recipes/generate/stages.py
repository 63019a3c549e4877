"""The stage of the `generate` recipe: one completion per row from a prompt template.

A row whose request finally fails is not dropped: it leaves the stage as a rejection
carrying its error and provenance, and the recipe writes it to the output with them.
"""

from __future__ import annotations

from typing import Any

from tasks.pipeline.llm_stage import Ask, LLMConfig, ask, provenance
from tasks.pipeline.stage import Stage, StageContext, StageResult


def generate_batch(rows: list[dict[str, Any]], config: LLMConfig, ctx: StageContext) -> StageResult:
    answers = ask(config, [Ask(fields=row) for row in rows], label=ctx.stage,
                  on_answer=lambda _i: ctx.progress())  # fmt: skip
    out = StageResult()
    for row, answer in zip(rows, answers, strict=True):
        out.add_calls(answer.results, config.template, config.template_version)
        record = dict(row, provenance=provenance(ctx, config, answer.last))
        if answer.ok:
            out.kept.append(dict(record, completion=answer.text))
        else:
            record["error"] = answer.error
            out.reject(record, ctx.stage, f"request failed: {answer.error}")
    return out


GENERATE = Stage(name="generate", fn=generate_batch)
