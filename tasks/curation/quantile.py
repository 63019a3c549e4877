"""Quality quantile: keep the top fraction of rows by a score (a judge's score, a reward
model's), e.g. the top quartile as in Llama 3. Rows without a score are rejected."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from tasks.curation.common import Spool, get_path, number, rejection
from tasks.pipeline.stage import GlobalStage, StageContext


class QualityQuantileConfig(BaseModel):
    score_field: str = Field(description="the score, dotted (judge.score, reward.score)")
    fraction: float = Field(0.25, gt=0.0, le=1.0, description="share of scored rows to keep")
    keep_ties: bool = Field(
        True,
        description="keep every row scoring the cutoff (may exceed the fraction); "
        "False keeps exactly ceil(fraction × n), earlier rows first among ties",
    )


def select_top(scores: np.ndarray, fraction: float, keep_ties: bool) -> tuple[np.ndarray, float]:
    """A keep mask over ``scores`` (NaN: never kept) and the cutoff score."""
    scored = np.flatnonzero(~np.isnan(scores))
    keep = np.zeros(len(scores), dtype=bool)
    if scored.size == 0:
        return keep, float("nan")
    k = math.ceil(fraction * scored.size)
    # descending score, earlier row first among ties
    ranked = scored[np.lexsort((scored, -scores[scored]))]
    cutoff = float(scores[ranked[k - 1]])
    if keep_ties:
        keep[scored[scores[scored] >= cutoff]] = True
    else:
        keep[ranked[:k]] = True
    return keep, cutoff


def quality_quantile(
    rows: Iterator[dict[str, Any]], config: QualityQuantileConfig, ctx: StageContext
) -> Iterator[tuple[str, dict[str, Any]]]:
    scores: list[float] = []
    with Spool() as spool:
        for row in rows:
            spool.append(row)
            s = number(get_path(row, config.score_field))
            scores.append(float("nan") if s is None else s)
        values = np.asarray(scores, dtype=np.float64)
        keep, cutoff = select_top(values, config.fraction, config.keep_ties)
        for i, row in enumerate(spool):
            if keep[i]:
                yield "kept", row
            elif math.isnan(values[i]):
                yield "rejected", rejection(row, ctx.stage, f"no score in {config.score_field}")
            else:
                yield (
                    "rejected",
                    rejection(
                        row,
                        ctx.stage,
                        f"below the top {config.fraction:.0%} by {config.score_field}",
                        {"score": values[i], "cutoff": cutoff},
                    ),
                )


def quality_quantile_stage(name: str = "quality_quantile") -> GlobalStage:
    return GlobalStage(name=name, fn=quality_quantile)
