"""Training utility, gradient-free: how much an example helps the target model on a small
development set of verified examples, measured as in-context learning (the "golden score"
of Nuggets: Li et al., "One Shot Learning as Instruction Data Prospector", ACL 2024).

For a fixed sample of dev examples ``d`` (``dev_sample`` of them, drawn once with
``seed``), the scorer model's loss on ``d``'s answer is read twice: zero-shot (after ``d``'s
instruction) and one-shot (after the candidate, instruction and answer, as an earlier
turn, then ``d``'s instruction). The loss is the mean negative log-probability of the
answer's tokens (``tasks.llm.scoring``: one decode per text, journaled). Then::

    utility = mean over d of (zero-shot loss - one-shot loss)
    golden_score = share of d whose loss drops (Nuggets' score)

A positive utility means the example, shown as a demonstration, makes the verified
answers likelier: the model learns from it. ``utility_score`` writes ``metadata.utility``
(and ``metadata.utility_detail``); ``utility_select`` keeps rows above ``min_utility``, and
with ``top_fraction`` the most useful fraction of those.

Cost: ``dev_sample`` scored texts per candidate (each the candidate plus one dev example),
plus ``dev_sample`` zero-shot texts once; it grows linearly with ``dev_sample``, not with
the dev file. A gradient-based variant (LESS) could sit behind the same config where
``torch`` and a GPU are present; it is not built.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from tasks.curation.common import Spool, rejection, spool_scores
from tasks.curation.ifd import IFDConfig, NotScorable, instruction_and_answer
from tasks.curation.quantile import select_top
from tasks.llm.base import ProviderSpec
from tasks.llm.scoring import calls_of, scorer_for
from tasks.pipeline.stage import GlobalStage, Stage, StageContext, StageResult


class DevExample(BaseModel):
    turns: list[dict[str, str]]
    answer: str


class UtilityConfig(BaseModel):
    dev: list[DevExample] = Field(min_length=1, description="verified examples (the content)")
    scorer: ProviderSpec = Field(default_factory=ProviderSpec)
    dev_sample: int = Field(8, ge=1, description="dev examples each candidate is tried on")
    seed: int = 0
    min_utility: float = Field(0.0, description="keep rows whose utility is above this")
    top_fraction: float | None = Field(None, gt=0.0, le=1.0)
    instruction_field: str | None = None
    answer_field: str | None = None
    batch_size: int = Field(16, ge=1)


def load_dev(rows: list[dict[str, Any]]) -> list[DevExample]:
    """Dev examples from chat rows (the published format); a row without an answer is
    an error: a dev set is small and should be checked by hand."""
    dev = []
    for row in rows:
        turns, answer = instruction_and_answer(row, IFDConfig())
        dev.append(DevExample(turns=turns, answer=answer))
    return dev


def _chatml(turns: list[dict[str, str]]) -> str:
    return "".join(f"<|im_start|>{t['role']}\n{t['content']}<|im_end|>\n" for t in turns)


def dev_sample(config: UtilityConfig) -> list[DevExample]:
    if len(config.dev) <= config.dev_sample:
        return list(config.dev)
    return random.Random(config.seed).sample(config.dev, config.dev_sample)


def _loss(values: list[float] | None) -> float | None:
    return -sum(values) / len(values) if values else None


def utility_score_batch(
    rows: list[dict[str, Any]], config: UtilityConfig, ctx: StageContext
) -> StageResult:
    out = StageResult()
    dev = dev_sample(config)
    ask = "<|im_start|>assistant\n"
    scorer = scorer_for(config.scorer)
    zero = scorer.score_many([(_chatml(d.turns) + ask, d.answer) for d in dev])
    out.add_calls(calls_of(zero), "score", "1")
    zero_loss = [_loss(z.logprobs) for z in zero]
    if any(z is None for z in zero_loss):
        why = next(z.error for z in zero if z.logprobs is None)
        for row in rows:
            out.reject(row, ctx.stage, f"utility: dev scoring failed: {why}")
        return out
    demos: list[tuple[int, str]] = []
    for i, row in enumerate(rows):
        cfg = IFDConfig(
            instruction_field=config.instruction_field, answer_field=config.answer_field
        )
        try:
            turns, answer = instruction_and_answer(row, cfg)
        except NotScorable as exc:
            out.reject(row, ctx.stage, f"utility: not scorable: {exc}")
            continue
        demos.append((i, _chatml([*turns, {"role": "assistant", "content": answer}])))
    for start in range(0, len(demos), config.batch_size):
        chunk = demos[start : start + config.batch_size]
        pairs = [(demo + _chatml(d.turns) + ask, d.answer) for _, demo in chunk for d in dev]
        scored = scorer.score_many(pairs)
        for n, (i, _) in enumerate(chunk):
            reads = scored[n * len(dev) : (n + 1) * len(dev)]
            out.add_calls(calls_of(reads), "score", "1")
            ctx.progress()
            losses = [_loss(r.logprobs) for r in reads]
            if any(v is None for v in losses):
                failed = next(r for r in reads if r.logprobs is None)
                kind = "not scorable" if failed.permanent else "scoring failed"
                out.reject(rows[i], ctx.stage, f"utility: {kind}: {failed.error}")
                continue
            drops = [z - o for z, o in zip(zero_loss, losses, strict=True)]  # type: ignore[operator]
            metadata = dict(rows[i].get("metadata") or {})
            metadata["utility"] = round(sum(drops) / len(drops), 6)
            metadata["utility_detail"] = {
                "golden_score": round(sum(d > 0 for d in drops) / len(drops), 4),
                "dev_examples": len(drops),
            }
            out.kept.append(dict(rows[i], metadata=metadata))
    return out


def utility_select(
    rows: Iterator[dict[str, Any]], config: UtilityConfig, ctx: StageContext
) -> Iterator[tuple[str, dict[str, Any]]]:
    with Spool() as spool:
        scores = np.asarray(spool_scores(rows, spool, "utility"), dtype=np.float64)
        above = scores > config.min_utility
        if config.top_fraction is not None:
            keep, cutoff = select_top(np.where(above, scores, np.nan), config.top_fraction, True)
        else:
            keep, cutoff = above, math.nan
        for i, row in enumerate(spool):
            s = scores[i]
            if keep[i]:
                yield "kept", row
            elif math.isnan(s):
                yield "rejected", rejection(row, ctx.stage, "utility: no score")
            elif not above[i]:
                why = f"utility {s:.4f} <= {config.min_utility:g}: does not help the dev set"
                yield "rejected", rejection(row, ctx.stage, why, {"utility": s})
            else:
                why = f"utility: below the top {config.top_fraction:.0%}"
                yield "rejected", rejection(row, ctx.stage, why, {"utility": s, "cutoff": cutoff})


def utility_score_stage(name: str = "utility_score") -> Stage:
    return Stage(name=name, fn=utility_score_batch)


def utility_select_stage(name: str = "utility_select") -> GlobalStage:
    return GlobalStage(name=name, fn=utility_select)
