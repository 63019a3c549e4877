"""Seed rows that LLM recipes start from: topics (a list, or a file of one topic a line),
drawn in turn with difficulties and optional code snippets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tasks.core.jsonl import InputError


def load_topics(value: list[str] | str | Path | None, default: Path | None = None) -> list[str]:
    """Topics from a list or a file (one per line; ``#`` starts a comment line). ``None``
    reads ``default`` (no default: no topics). A file that is missing or holds no topic
    is an :class:`InputError`."""
    if value is None:
        if default is None:
            return []
        value = default
    if isinstance(value, list):
        return [t.strip() for t in value if t.strip()]
    source = Path(value)
    if not source.exists():
        raise InputError(f"topics file not found: {source}")
    topics = [
        line.strip()
        for line in source.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    if not topics:
        raise InputError(f"topics file {source} has no topics")
    return topics


def seed_rows(
    n: int, topics: list[str], difficulties: list[str], snippets: list[str] | None = None
) -> Iterator[dict[str, Any]]:
    """``n`` seeds cycling through topics, difficulties and snippets, so the records
    spread over all of them; ``variant`` tells apart seeds that share a topic."""
    for i in range(n):
        row: dict[str, Any] = {
            "id": f"seed-{i:06d}",
            "topic": topics[i % len(topics)],
            "difficulty": difficulties[i % len(difficulties)],
            "variant": i // len(topics),
        }
        if snippets:
            row["snippet"] = snippets[i % len(snippets)]
        yield row
