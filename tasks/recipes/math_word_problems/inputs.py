"""Inputs of the math recipe: the user's own word problems (a table, see
:mod:`tasks.core.tables`), optionally with reference answers, instead of generated ones."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tasks.core.records import record_id
from tasks.core.tables import count_checked, texts_of


def reference_text(value: Any) -> str:
    """A reference answer as text: GSM8K-style answers end with ``#### 18`` after their
    worked solution; only the part after the last ``####`` is the answer."""
    text = "" if value is None else str(value)
    return text.rsplit("####", 1)[-1].strip()


def problem_rows(
    path: str, problem_field: str, answer_field: str | None, limit: int | None = None
) -> Iterator[dict[str, Any]]:
    """The user's problems as rows the solve stage answers, each with the row it came
    from (``source_id``) and any reference answer (checked by the execute stage)."""
    for source, problem, row in texts_of(path, problem_field, limit):
        yield {
            "id": record_id("m", problem),
            "seed_id": source,
            "source_id": source,
            "topic": str(row.get("topic") or ""),
            "difficulty": str(row.get("difficulty") or ""),
            "problem": problem,
            "reference_answer": reference_text(row.get(answer_field)) if answer_field else "",
        }


def check_problems(
    path: str, problem_field: str, answer_field: str | None, limit: int | None = None
) -> int:
    """Read the problems once before anything is paid for; the number of rows."""
    fields = [problem_field] + ([answer_field] if answer_field else [])
    return count_checked(path, fields, problem_rows(path, problem_field, answer_field, limit))
