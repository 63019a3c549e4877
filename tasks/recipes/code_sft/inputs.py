"""Inputs of the code SFT recipe: code snippets that seed problems (topics and seed rows
are :mod:`tasks.core.seeds`)."""

from __future__ import annotations

from pathlib import Path

from tasks.core.jsonl import InputError

SNIPPET_SUFFIXES = {".py", ".php", ".js", ".ts", ".go", ".rs", ".java", ".c", ".cpp", ".rb"}
MAX_SNIPPET_CHARS = 1200


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
