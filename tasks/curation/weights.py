"""Weights instead of discards: any score (a judge's, IFD, utility, adherence) becomes a
per-example ``metadata.weight`` for weighted training, in place of a hard threshold.

The mapping is rank-normalised, so scores on any scale (a 1-10 judge, a perplexity ratio,
a loss drop) give comparable weights and one outlier does not flatten the rest::

    weight = (average rank of the row's score among the scored rows) / n

ranks counted from 1 for the worst score, ties sharing their average rank, so weights lie
in (0, 1], the best row weighs 1 and the median about 0.5. ``higher_is_better=False``
ranks the other way (e.g. a perplexity). Every scored row is kept; a row with no score
is rejected (a weight cannot be made up). To keep only the top quartile of any score
instead, use the quantile step (``winnow curate quantile --score-field metadata.ifd``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from tasks.curation.common import Spool, get_path, number, rejection
from tasks.pipeline.stage import GlobalStage, StageContext


class WeightConfig(BaseModel):
    score_field: str = Field(description="the score, dotted (judge.score, metadata.ifd)")
    higher_is_better: bool = True


def rank_weights(scores: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """Average-rank weights in (0, 1] for the finite scores; NaN where there is none."""
    out = np.full(len(scores), np.nan)
    scored = np.flatnonzero(~np.isnan(scores))
    if scored.size == 0:
        return out
    values = scores[scored] if higher_is_better else -scores[scored]
    order = np.argsort(values, kind="stable")
    ranks = np.empty(scored.size)
    sorted_values = values[order]
    i = 0
    while i < scored.size:
        j = i
        while j + 1 < scored.size and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1  # ranks from 1, ties averaged
        i = j + 1
    out[scored] = ranks / scored.size
    return out


def weight_by_score(
    rows: Iterator[dict[str, Any]], config: WeightConfig, ctx: StageContext
) -> Iterator[tuple[str, dict[str, Any]]]:
    values: list[float] = []
    with Spool() as spool:
        for row in rows:
            spool.append(row)
            s = number(get_path(row, config.score_field))
            values.append(math.nan if s is None else s)
        weights = rank_weights(np.asarray(values, dtype=np.float64), config.higher_is_better)
        for i, row in enumerate(spool):
            if math.isnan(weights[i]):
                why = f"no score in {config.score_field} to weigh by"
                yield "rejected", rejection(row, ctx.stage, why)
                continue
            metadata = dict(row.get("metadata") or {})
            metadata["weight"] = round(float(weights[i]), 6)
            metadata["weight_source"] = config.score_field
            yield "kept", dict(row, metadata=metadata)


def weight_stage(name: str = "weight") -> GlobalStage:
    return GlobalStage(name=name, fn=weight_by_score)
