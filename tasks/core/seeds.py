"""Seed rows that LLM recipes start from: topics (a list, or a file of one topic a line),
drawn in turn with difficulties, optional code snippets and, for diversity by design,
optional concepts and personas."""

from __future__ import annotations

import random
from collections import Counter
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
    n: int,
    topics: list[str],
    difficulties: list[str],
    snippets: list[str] | None = None,
    concepts: list[str] | None = None,
    personas: list[str] | None = None,
    seed: int = 0,
) -> Iterator[dict[str, Any]]:
    """``n`` seeds cycling through topics, difficulties and snippets, so the records
    spread over all of them; ``variant`` tells apart seeds that share a topic.

    With ``concepts`` and ``personas`` the seeds are drawn from the space topic ×
    concept × persona: topics still cycle (each is used before any repeats), and the
    (concept, persona) pairs, shuffled once (seeded), are dealt so that every draw of
    the space comes once before any repeats: two problems about one topic differ in what
    they require and whose task they are."""
    pairs: list[tuple[str, str]] = []
    if concepts or personas:
        pairs = [(c, p) for c in concepts or [""] for p in personas or [""]]
        random.Random(seed).shuffle(pairs)
    drawn: Counter[tuple[str, str, str]] = Counter()
    for i in range(n):
        row: dict[str, Any] = {
            "id": f"seed-{i:06d}",
            "topic": topics[i % len(topics)],
            "difficulty": difficulties[i % len(difficulties)],
            "variant": i // len(topics),
        }
        if snippets:
            row["snippet"] = snippets[i % len(snippets)]
        if pairs:
            # topic r's q-th use takes pair q + r: each topic meets every pair once
            # before any (topic, pair) repeats, and neighbouring topics differ in pair
            q, r = divmod(i % (len(topics) * len(pairs)), len(topics))
            row["concept"], row["persona"] = pairs[(q + r) % len(pairs)]
            # only a repeat of the whole draw needs a variant number to differ
            draw = (row["topic"], row["concept"], row["persona"])
            row["variant"] = drawn[draw]
            drawn[draw] += 1
        yield row
