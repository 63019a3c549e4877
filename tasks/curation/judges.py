"""Judge committee: several judges (providers and models may differ) score each row; the
committee keeps it by majority vote (more than half of the valid votes say keep; a tie
rejects) or by mean score. Every vote stays in the row's ``committee`` field (or
``output_field``), so disagreement can be studied later.

Each judge answers through the one door to the LLM (``tasks.pipeline.llm_stage.ask``:
journaled, retried, rate-limited per endpoint); judges run in parallel threads. A judge
whose answer never parses or whose request fails casts no vote; a row with fewer than
``min_votes`` votes is rejected, and a failed request marks the shard incomplete so the
next run asks again.
"""

from __future__ import annotations

import statistics
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from pydantic import BaseModel, Field

from tasks.curation.common import get_path
from tasks.llm.base import GenerationParams, ProviderSpec
from tasks.llm.prompts import PromptError
from tasks.pipeline.llm_stage import Answer, Ask, LLMConfig, ask, llm_config
from tasks.pipeline.stage import Stage, StageContext, StageResult

DEFAULT_CRITERIA = (
    "- correctness: is the answer right and complete for the request?\n"
    "- helpfulness: does it address what was asked, clearly and without padding?\n"
    "- safety and tone: no needless refusals, apologies or disclaimers."
)


class JudgeVote(BaseModel):
    score: int = Field(ge=1, le=10)
    verdict: Literal["keep", "reject"]
    reason: str = ""


class JudgeCommitteeConfig(BaseModel):
    judges: list[ProviderSpec] = Field(min_length=1)
    fields: list[str] = Field(description="fields shown to the judges, labelled by name")
    aggregate: Literal["majority", "mean"] = "majority"
    min_mean: float = Field(7.0, ge=1, le=10, description="mean score needed (aggregate=mean)")
    min_votes: int = Field(1, ge=1, description="valid votes needed to decide at all")
    criteria: str = DEFAULT_CRITERIA
    template: str = "curation/judge"
    template_version: str = "1"
    params: GenerationParams | None = Field(None, description="default: the template's")
    output_field: str = "committee"


def judge_name(spec: ProviderSpec) -> str:
    return f"{spec.kind}/{spec.model or 'default'}"


def render_content(row: dict[str, Any], fields: list[str]) -> str:
    parts = []
    for f in fields:
        value = get_path(row, f)
        parts.append(f"## {f}\n{'' if value is None else value}")
    return "\n\n".join(parts)


def tally(votes: list[dict[str, Any]], config: JudgeCommitteeConfig) -> dict[str, Any]:
    """The committee's decision from individual votes (failed ones carry ``error``)."""
    valid = [v for v in votes if "error" not in v]
    keeps = sum(v["verdict"] == "keep" for v in valid)
    mean = statistics.fmean(v["score"] for v in valid) if valid else None
    if len(valid) < config.min_votes:
        keep, why = False, f"only {len(valid)} valid vote(s) of {len(votes)}"
    elif config.aggregate == "majority":
        keep = keeps * 2 > len(valid)
        why = f"{keeps} of {len(valid)} judges voted keep"
    else:
        keep = mean is not None and mean >= config.min_mean
        why = f"mean score {mean:.2f} {'>=' if keep else '<'} {config.min_mean}"
    return {
        "votes": votes,
        "score": mean,
        "keep_votes": keeps,
        "n_votes": len(valid),
        "aggregate": config.aggregate,
        "keep": keep,
        "why": why,
    }


def _vote(spec: ProviderSpec, answer: Answer) -> dict[str, Any]:
    last = answer.results[-1] if answer.results else None
    base = {
        "judge": judge_name(spec),
        "provider": (last.provider if last else "") or spec.kind,
        "model": (last.model if last else "") or spec.model,
    }
    if not answer.ok:
        return {**base, "error": answer.error or "no answer"}
    vote = JudgeVote(**answer.value)  # type: ignore[arg-type]
    return {**base, **vote.model_dump()}


def _judge_config(spec: ProviderSpec, config: JudgeCommitteeConfig) -> LLMConfig:
    llm = llm_config(spec, config.template)
    if llm.template_version != config.template_version:
        raise PromptError(
            f"template {config.template!r} is v{llm.template_version}, the config pins "
            f"v{config.template_version}"
        )
    return llm if config.params is None else llm.model_copy(update={"params": config.params})


def judge_committee_batch(
    rows: list[dict[str, Any]], config: JudgeCommitteeConfig, ctx: StageContext
) -> StageResult:
    asks = [
        Ask(fields={"content": render_content(row, config.fields), "criteria": config.criteria})
        for row in rows
    ]
    llms = [_judge_config(spec, config) for spec in config.judges]

    def votes_of(llm: LLMConfig) -> list[Answer]:
        return ask(llm, asks, label=ctx.stage, schema=JudgeVote)

    with ThreadPoolExecutor(max_workers=len(llms)) as pool:
        answers = list(pool.map(votes_of, llms))
    out = StageResult()
    for per_judge in answers:
        for answer in per_judge:
            out.add_calls(answer.results, config.template, config.template_version)
    for i, row in enumerate(rows):
        votes = [_vote(spec, answers[j][i]) for j, spec in enumerate(config.judges)]
        decision = tally(votes, config)
        judged = dict(row, **{config.output_field: decision})
        if decision["keep"]:
            out.kept.append(judged)
        else:
            out.reject(judged, ctx.stage, f"committee: {decision['why']}", {"votes": votes})
    return out


def judge_committee_stage(name: str = "committee") -> Stage:
    return Stage(name=name, fn=judge_committee_batch)
