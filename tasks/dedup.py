"""Exact deduplication on normalised text, as a whole-dataset step.

Normalisation folds case and whitespace and, for code, can drop comments, so two answers
that differ only in formatting count as one. The first occurrence is kept; each later one
is rejected with the id of the row it duplicates. Memory: one 16-byte digest per kept row.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, Field

from tasks.stage import GlobalStage, StageContext

_SPACE = re.compile(r"\s+")
_PY_COMMENT = re.compile(r"#[^\n]*")


class ExactDedupConfig(BaseModel):
    fields: list[str] = Field(description="fields whose joined text identifies a row")
    ignore_case: bool = True
    strip_comments: bool = False


def normalise(text: str, ignore_case: bool = True, strip_comments: bool = False) -> str:
    if strip_comments:
        text = _PY_COMMENT.sub("", text)
    text = _SPACE.sub(" ", text).strip()
    return text.lower() if ignore_case else text


def digest(row: dict[str, Any], config: ExactDedupConfig) -> bytes:
    parts = [
        normalise(str(row.get(f, "") or ""), config.ignore_case, config.strip_comments)
        for f in config.fields
    ]
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).digest()


def exact_dedup(
    rows: Iterator[dict[str, Any]], config: ExactDedupConfig, ctx: StageContext
) -> Iterator[tuple[str, dict[str, Any]]]:
    seen: dict[bytes, str] = {}
    for row in rows:
        d = digest(row, config)
        first = seen.get(d)
        if first is None:
            seen[d] = str(row.get("id", ""))
            yield "kept", row
        else:
            yield (
                "rejected",
                {
                    "record_id": str(row.get("id", "")),
                    "stage": ctx.stage,
                    "reason": f"duplicate of {first}",
                    "detail": {"duplicate_of": first},
                    "record": row,
                },
            )


def exact_dedup_stage(name: str = "dedup") -> GlobalStage:
    return GlobalStage(name=name, fn=exact_dedup)
