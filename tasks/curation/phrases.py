"""Phrase balance: cap the share of rows containing overused phrases ("I'm sorry",
"As an AI", ...) instead of banning them, dropping the lowest-quality rows first.

Llama 3 rebalanced such phrases rather than removing them: a model should still be able
to apologise, just not in every answer. For each phrase, the rows containing it may make
up at most ``max_share`` of the *output*; rows are dropped from the lowest score up
(ties: the later row first) until every phrase fits. Dropping a row lowers the output
size too, so the caps are re-checked until none is exceeded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, Field

from tasks.curation.common import Spool, get_path, number, rejection, text_of
from tasks.pipeline.stage import GlobalStage, StageContext

DEFAULT_PHRASES = [
    "I'm sorry",
    "I am sorry",
    "I apologize",
    "I apologise",
    "As an AI",
    "as a language model",
]


class PhraseBalanceConfig(BaseModel):
    fields: list[str] = Field(description="fields searched for the phrases")
    phrases: list[str] = Field(default_factory=lambda: list(DEFAULT_PHRASES), min_length=1)
    max_share: float = Field(0.05, ge=0.0, le=1.0, description="cap per phrase, of the output")
    score_field: str | None = Field(None, description="quality score, dotted; low goes first")
    ignore_case: bool = True


def phrase_patterns(config: PhraseBalanceConfig) -> list[re.Pattern[str]]:
    """One pattern per phrase; straight and curly apostrophes match each other."""
    flags = re.IGNORECASE if config.ignore_case else 0
    patterns = []
    for phrase in config.phrases:
        body = "".join("['\u2019]" if ch in "'\u2019" else re.escape(ch) for ch in phrase)
        patterns.append(re.compile(r"(?<!\w)" + body + r"(?!\w)", flags))
    return patterns


def plan_drops(
    members: list[list[int]],
    matched: dict[int, tuple[int, ...]],
    order_key: dict[int, tuple[float, int]],
    n_rows: int,
    max_share: float,
) -> dict[int, int]:
    """Rows to drop (row → the phrase it was dropped for) so that for every phrase p,
    rows containing p ≤ max_share × rows kept. ``members[p]``: rows containing p."""
    queues = [sorted(rows, key=lambda r: order_key[r]) for rows in members]
    pointer = [0] * len(members)
    counts = [len(rows) for rows in members]
    dropped: dict[int, int] = {}
    n_out = n_rows
    changed = True
    while changed:
        changed = False
        for p, queue in enumerate(queues):
            while counts[p] > max_share * n_out:
                while queue[pointer[p]] in dropped:
                    pointer[p] += 1
                row = queue[pointer[p]]
                dropped[row] = p
                n_out -= 1
                for q in matched[row]:
                    counts[q] -= 1
                changed = True
    return dropped


def phrase_balance(
    rows: Iterator[dict[str, Any]], config: PhraseBalanceConfig, ctx: StageContext
) -> Iterator[tuple[str, dict[str, Any]]]:
    patterns = phrase_patterns(config)
    members: list[list[int]] = [[] for _ in patterns]
    matched: dict[int, tuple[int, ...]] = {}
    order_key: dict[int, tuple[float, int]] = {}
    with Spool() as spool:
        for i, row in enumerate(rows):
            spool.append(row)
            text = text_of(row, config.fields)
            hits = tuple(p for p, pattern in enumerate(patterns) if pattern.search(text))
            if not hits:
                continue
            matched[i] = hits
            score = number(get_path(row, config.score_field)) if config.score_field else None
            # ascending: lowest score first, missing lowest of all; ties: later row first
            order_key[i] = (float("-inf") if score is None else score, -i)
            for p in hits:
                members[p].append(i)
        n = spool.count
        dropped = plan_drops(members, matched, order_key, n, config.max_share)
        share = {p: len(m) / n if n else 0.0 for p, m in enumerate(members)}
        for i, row in enumerate(spool):
            p = dropped.get(i)
            if p is None:
                yield "kept", row
                continue
            phrase = config.phrases[p]
            yield (
                "rejected",
                rejection(
                    row,
                    ctx.stage,
                    f"overused phrase {phrase!r} (cap {config.max_share:.0%} of output)",
                    {
                        "phrase": phrase,
                        "share_in_input": round(share[p], 4),
                        "max_share": config.max_share,
                        "score": order_key[i][0] if config.score_field else None,
                    },
                ),
            )


def phrase_balance_stage(name: str = "phrase_balance") -> GlobalStage:
    return GlobalStage(name=name, fn=phrase_balance)
