"""Inputs of the code SFT recipe: the user's own problems (a table, see
:mod:`tasks.core.tables`), or code snippets that seed generated ones (topics and seed
rows are :mod:`tasks.core.seeds`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tasks.core.jsonl import InputError
from tasks.core.records import record_id
from tasks.core.tables import count_checked, texts_of

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


def _tests_text(value: Any) -> str:
    """Reference tests as code: a string, or a list of statements (MBPP's ``test_list``)."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return "\n".join(str(v).rstrip() for v in value if str(v).strip())
    return str(value)


def problem_rows(
    path: str, problem_field: str, tests_field: str | None, limit: int | None = None
) -> Iterator[dict[str, Any]]:
    """The user's problems as the problems stage's rows (which it passes on without a
    request): the statement, the row it came from (``source_id``) and any reference
    tests, which the execute stage runs beside the candidate's own."""
    for source, problem, row in texts_of(path, problem_field, limit):
        yield {
            "id": record_id("p", problem),
            "source_id": source,
            "topic": str(row.get("topic") or ""),
            "difficulty": str(row.get("difficulty") or ""),
            "title": str(row.get("title") or ""),
            "problem": problem,
            "reference_tests": _tests_text(row.get(tests_field)) if tests_field else "",
        }


def check_problems(
    path: str, problem_field: str, tests_field: str | None, limit: int | None = None
) -> int:
    """Read the problems once before anything is paid for: the fields exist, every row
    has a statement. The number of rows."""
    fields = [problem_field] + ([tests_field] if tests_field else [])
    return count_checked(path, fields, problem_rows(path, problem_field, tests_field, limit))
