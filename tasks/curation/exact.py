"""Exact deduplication on normalised text, as a whole-dataset step.

Normalisation folds case and whitespace and, for code, can drop comments, so two answers
that differ only in formatting count as one. The first occurrence is kept; each later one
is rejected with the id of the row it duplicates. Memory: one 16-byte digest per kept row.

Comment stripping is lexical (a ``#`` or ``//`` inside a string literal is cut too): good
enough to make two copies compare equal, never used to change the data itself.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, Field

from tasks.curation.common import get_path, rejection
from tasks.pipeline.stage import GlobalStage, StageContext

_SPACE = re.compile(r"\s+")
_COMMENTS = {
    "hash": re.compile(r"#[^\n]*"),  # Python, shell, Ruby, PHP
    "c": re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL),  # C, Java, JS, PHP, Go
    "all": re.compile(r"#[^\n]*|//[^\n]*|/\*.*?\*/", re.DOTALL),
}

CommentSyntax = Literal["hash", "c", "all"]


class ExactDedupConfig(BaseModel):
    fields: list[str] = Field(description="fields whose joined text identifies a row")
    ignore_case: bool = True
    strip_comments: bool = False
    comment_syntax: CommentSyntax = Field(
        "hash", description="which comments strip_comments removes: '#', '//' and '/* */', or all"
    )


def normalise(
    text: str,
    ignore_case: bool = True,
    strip_comments: bool = False,
    comment_syntax: CommentSyntax = "hash",
) -> str:
    if strip_comments:
        text = _COMMENTS[comment_syntax].sub("", text)
    text = _SPACE.sub(" ", text).strip()
    return text.lower() if ignore_case else text


def digest(row: dict[str, Any], config: ExactDedupConfig) -> bytes:
    parts = [
        normalise(
            str(get_path(row, f) or ""),
            config.ignore_case,
            config.strip_comments,
            config.comment_syntax,
        )
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
                rejection(row, ctx.stage, f"duplicate of {first}", {"duplicate_of": first}),
            )


def exact_dedup_stage(name: str = "dedup") -> GlobalStage:
    return GlobalStage(name=name, fn=exact_dedup)
