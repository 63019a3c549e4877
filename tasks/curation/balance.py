"""Class balance: report the distribution of a column (topic, difficulty, question kind)
and, given a target mix, downsample toward it.

Rebalancing only removes rows, so the output is the largest set with exactly the target
proportions (up to rounding) that the input can supply: its size is limited by the
scarcest class relative to its target share. Within a class the best rows by
``score_field`` stay (ties and no score: earlier rows first). Classes the target does not
name (or names with share 0) are dropped. A GX suite (``expectations/curation.balance``)
can then hold the recipe to a tolerance around the mix.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, Field, field_validator

from tasks.curation.common import Spool, get_path, number, rejection
from tasks.pipeline.stage import GlobalStage, StageContext

log = logging.getLogger("winnow")

MISSING = "(missing)"


class ClassBalanceConfig(BaseModel):
    column: str = Field(description="the class column, dotted")
    target: dict[str, float] | None = Field(
        None, description="class → share (normalised to sum 1); None: report only, keep all"
    )
    score_field: str | None = Field(None, description="within a class, best rows stay")

    @field_validator("target")
    @classmethod
    def _shares(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return None
        if any(v < 0 for v in value.values()) or sum(value.values()) <= 0:
            raise ValueError("target shares must be >= 0 and not all 0")
        total = sum(value.values())
        return {k: v / total for k, v in value.items()}


def label(row: dict[str, Any], column: str) -> str:
    value = get_path(row, column)
    return MISSING if value is None or value == "" else str(value)


def distribution(
    counts: Counter[str], target: dict[str, float] | None = None
) -> list[dict[str, Any]]:
    """Rows per class with share and (if given) target share, largest class first."""
    total = sum(counts.values())
    names = sorted(set(counts) | set(target or {}), key=lambda k: (-counts.get(k, 0), k))
    return [
        {
            "class": k,
            "count": counts.get(k, 0),
            "share": round(counts.get(k, 0) / total, 4) if total else 0.0,
            **({"target": round(target.get(k, 0.0), 4)} if target is not None else {}),
        }
        for k in names
    ]


def quotas(counts: Counter[str], target: dict[str, float]) -> dict[str, int]:
    """Rows to keep per class: the largest output with the target mix the counts allow.

    Target classes with no rows at all are left out (the others are renormalised), so an
    absent class does not empty the output; the report shows it at 0.
    """
    present = {k: t for k, t in target.items() if t > 0 and counts.get(k, 0) > 0}
    if not present:
        return {}
    total = sum(present.values())
    shares = {k: t / total for k, t in present.items()}
    n_out = min(counts[k] / s for k, s in shares.items())
    return {k: min(counts[k], math.floor(s * n_out + 1e-9)) for k, s in shares.items()}


def class_balance(
    rows: Iterator[dict[str, Any]], config: ClassBalanceConfig, ctx: StageContext
) -> Iterator[tuple[str, dict[str, Any]]]:
    labels: list[str] = []
    scores: list[float] = []
    with Spool() as spool:
        for row in rows:
            spool.append(row)
            labels.append(label(row, config.column))
            s = number(get_path(row, config.score_field)) if config.score_field else None
            scores.append(float("-inf") if s is None else s)
        counts = Counter(labels)
        log.info("%s: distribution of %s: %s", ctx.stage, config.column, distribution(counts))
        if config.target is None:
            for row in spool:
                yield "kept", row
            return
        quota = quotas(counts, config.target)
        by_class: dict[str, list[int]] = {}
        for i, k in enumerate(labels):
            by_class.setdefault(k, []).append(i)
        keep: set[int] = set()
        for k, members in by_class.items():
            best = sorted(members, key=lambda i: (-scores[i], i))
            keep.update(best[: quota.get(k, 0)])
        after = Counter(labels[i] for i in keep)
        log.info("%s: after balancing: %s", ctx.stage, distribution(after, config.target))
        for i, row in enumerate(spool):
            k = labels[i]
            if i in keep:
                yield "kept", row
            elif config.target.get(k, 0.0) <= 0:
                yield (
                    "rejected",
                    rejection(row, ctx.stage, f"class {k!r} not in the target mix", {"class": k}),
                )
            else:
                yield (
                    "rejected",
                    rejection(
                        row,
                        ctx.stage,
                        f"class {k!r} over its target share {config.target[k]:.0%}",
                        {"class": k, "share_in_input": round(counts[k] / len(labels), 4)},
                    ),
                )


def class_balance_stage(name: str = "class_balance") -> GlobalStage:
    return GlobalStage(name=name, fn=class_balance)
