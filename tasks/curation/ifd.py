"""Instruction-following difficulty (IFD): how much the instruction helps a model predict
the answer, as the ratio of the answer's perplexity with the instruction to its perplexity
alone (Li et al., "From Quantity to Quality: Boosting LLM Performance with Self-Guided
Data Selection for Instruction Tuning", the Cherry LLM paper)::

    IFD = PPL(answer | instruction) / PPL(answer)

An IFD at or above 1 means the instruction does not help at all: the pair teaches nothing
(often a mismatched or generic answer). Below 1, a higher IFD is a harder, more useful
example. Superfiltering (Li et al., 2024) shows a small scorer model ranks examples well
for training much larger ones, so the default scorer is the embedded 1.5B model.

Two steps, so a recipe scores per shard (sharded, cached, every score journaled) and
selects over the whole set:

- ``ifd_score`` (batch): scores each row; the figure goes to ``metadata.ifd`` and the two
  perplexities to ``metadata.ifd_ppl``; a row that cannot be scored is rejected (and its
  shard left incomplete, so the next run asks again);
- ``ifd_select`` (global): keeps rows with ``min_ifd <= IFD < max_ifd``, then, with
  ``top_fraction``, the most difficult fraction of those.

Rows are chat rows (``messages``: the answer is the last assistant message, everything
before it the instruction) or, with ``instruction_field``/``answer_field``, a recipe's
own rows before they are published.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from tasks.curation.common import Spool, get_path, rejection, spool_scores
from tasks.curation.quantile import select_top
from tasks.llm.base import ProviderSpec
from tasks.llm.scoring import calls_of, perplexity, scorer_for
from tasks.pipeline.stage import GlobalStage, Stage, StageContext, StageResult


class IFDConfig(BaseModel):
    scorer: ProviderSpec = Field(
        default_factory=ProviderSpec,
        description="the scoring model (default: the embedded model); any provider that "
        "returns log-probabilities of a given text",
    )
    min_ifd: float = Field(0.0, ge=0.0, description="keep rows with IFD at least this")
    max_ifd: float = Field(1.0, gt=0.0, description="keep rows with IFD below this")
    top_fraction: float | None = Field(
        None, gt=0.0, le=1.0, description="then keep the most difficult fraction of those"
    )
    prompt_format: Literal["chatml", "plain"] = Field(
        "chatml", description="how the instruction is laid out before the answer"
    )
    instruction_field: str | None = Field(None, description="not chat rows: the instruction")
    answer_field: str | None = Field(None, description="not chat rows: the answer")
    batch_size: int = Field(32, ge=1, description="rows scored per call of the scorer")


class NotScorable(ValueError):
    """A row with no instruction or no answer to score."""


def instruction_and_answer(
    row: dict[str, Any], config: IFDConfig
) -> tuple[list[dict[str, str]], str]:
    """The turns before the answer (role, content) and the answer itself."""
    if config.instruction_field or config.answer_field:
        question = get_path(row, config.instruction_field or "")
        answer = get_path(row, config.answer_field or "")
        if not question or not answer:
            raise NotScorable(f"no {config.instruction_field} or {config.answer_field}")
        return [{"role": "user", "content": str(question)}], str(answer)
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise NotScorable("no messages")
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "assistant" or not last.get("content"):
        raise NotScorable("the last message is not an assistant answer")
    turns = [
        {"role": str(m.get("role", "user")), "content": str(m.get("content") or "")}
        for m in messages[:-1]
        if isinstance(m, dict)
    ]
    if not turns:
        raise NotScorable("no instruction before the answer")
    return turns, str(last["content"])


def prefixes(turns: list[dict[str, str]], fmt: str) -> tuple[str, str]:
    """The text before the answer with the instruction, and without it."""
    if fmt == "chatml":
        head = "".join(f"<|im_start|>{t['role']}\n{t['content']}<|im_end|>\n" for t in turns)
        return head + "<|im_start|>assistant\n", "<|im_start|>assistant\n"
    question = "\n\n".join(t["content"] for t in turns)
    return f"Instruction:\n{question}\n\nAnswer:\n", "Answer:\n"


def _with_metadata(row: dict[str, Any], **values: Any) -> dict[str, Any]:
    metadata = dict(row.get("metadata") or {})
    metadata.update(values)
    return dict(row, metadata=metadata)


def ifd_score_batch(
    rows: list[dict[str, Any]], config: IFDConfig, ctx: StageContext
) -> StageResult:
    out = StageResult()
    pairs: list[tuple[str, str]] = []
    owners: list[int] = []
    for i, row in enumerate(rows):
        try:
            turns, answer = instruction_and_answer(row, config)
        except NotScorable as exc:
            out.reject(row, ctx.stage, f"ifd: not scorable: {exc}")
            continue
        with_q, alone = prefixes(turns, config.prompt_format)
        pairs += [(with_q, answer), (alone, answer)]
        owners.append(i)
    scorer = scorer_for(config.scorer)
    for start in range(0, len(owners), config.batch_size):
        chunk = owners[start : start + config.batch_size]
        scored = scorer.score_many(pairs[2 * start : 2 * (start + len(chunk))])
        for n, i in enumerate(chunk):
            cond, direct = scored[2 * n], scored[2 * n + 1]
            out.add_calls(calls_of([cond, direct]), "score", "1")
            ctx.progress()
            if cond.logprobs is None or direct.logprobs is None:
                why = cond.error or direct.error
                kind = "not scorable" if cond.permanent or direct.permanent else "scoring failed"
                out.reject(rows[i], ctx.stage, f"ifd: {kind}: {why}")
                continue
            ppl_cond, ppl_direct = perplexity(cond.logprobs), perplexity(direct.logprobs)
            out.kept.append(
                _with_metadata(
                    rows[i],
                    ifd=round(ppl_cond / ppl_direct, 6),
                    ifd_ppl={"conditioned": round(ppl_cond, 6), "direct": round(ppl_direct, 6)},
                )
            )
    return out


def ifd_select(
    rows: Iterator[dict[str, Any]], config: IFDConfig, ctx: StageContext
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Keep rows in ``[min_ifd, max_ifd)``; with ``top_fraction`` the highest of those."""

    def reject(row: dict[str, Any], reason: str, detail: dict[str, Any]) -> dict[str, Any]:
        return rejection(row, ctx.stage, reason, detail or None)

    with Spool() as spool:
        scores = np.asarray(spool_scores(rows, spool, "ifd"), dtype=np.float64)
        in_range = (scores >= config.min_ifd) & (scores < config.max_ifd)
        ranked = np.where(in_range, scores, np.nan)
        if config.top_fraction is not None:
            keep, cutoff = select_top(ranked, config.top_fraction, keep_ties=True)
        else:
            keep, cutoff = in_range, math.nan
        for i, row in enumerate(spool):
            s = scores[i]
            if keep[i]:
                yield "kept", row
            elif math.isnan(s):
                yield "rejected", reject(row, "ifd: no score in metadata.ifd", {})
            elif s >= config.max_ifd:
                why = f"ifd {s:.3f} >= {config.max_ifd:g}: the instruction does not help"
                yield "rejected", reject(row, why, {"ifd": s})
            elif s < config.min_ifd:
                why = f"ifd {s:.3f} < {config.min_ifd:g}: too easy"
                yield "rejected", reject(row, why, {"ifd": s})
            else:
                why = f"ifd: below the top {config.top_fraction:.0%} by difficulty"
                yield "rejected", reject(row, why, {"ifd": s, "cutoff": cutoff})


def ifd_score_stage(name: str = "ifd_score") -> Stage:
    return Stage(name=name, fn=ifd_score_batch)


def ifd_select_stage(name: str = "ifd_select") -> GlobalStage:
    return GlobalStage(name=name, fn=ifd_select)
