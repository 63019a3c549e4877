"""Seeds of the code SFT recipe: topics (built-in or a user file) and optional snippets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tasks.jsonl import InputError
from winnow.paths import prompts_dir

SNIPPET_SUFFIXES = {".py", ".php", ".js", ".ts", ".go", ".rs", ".java", ".c", ".cpp", ".rb"}
MAX_SNIPPET_CHARS = 1200


def load_topics(path: str | None) -> list[str]:
    source = Path(path) if path else prompts_dir() / "code_sft" / "topics.txt"
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


def load_snippets(path: str | None) -> list[str]:
    if not path:
        return []
    source = Path(path)
    if not source.exists():
        raise InputError(f"snippets path not found: {source}")
    files = (
        [source]
        if source.is_file()
        else sorted(p for p in source.rglob("*") if p.is_file() and p.suffix in SNIPPET_SUFFIXES)
    )
    snippets = [f.read_text(errors="replace")[:MAX_SNIPPET_CHARS] for f in files]
    snippets = [s for s in snippets if s.strip()]
    if not snippets:
        raise InputError(f"no code snippets found in {source}")
    return snippets


def seed_rows(
    n: int, topics: list[str], difficulties: list[str], snippets: list[str]
) -> Iterator[dict[str, Any]]:
    """``n`` seeds cycling through topics, difficulties and snippets, so the problems
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
