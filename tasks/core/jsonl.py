"""JSON Lines in and out, with errors that name the file and the line."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO


class InputError(ValueError):
    """Input a user must fix: unreadable file, a line that is not a JSON object, a
    missing field. Raised before any LLM request is made."""


def iter_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        raise InputError(f"input file not found: {path}")
    with path.open(encoding="utf-8") as fh:
        yield from parse_lines(fh, str(path))


def parse_lines(lines: Iterable[str] | TextIO, source: str = "<stdin>") -> Iterator[dict[str, Any]]:
    for _, row in numbered_rows(lines, lambda number: f"{source}:{number}"):
        yield row


def numbered_rows(
    lines: Iterable[str] | TextIO, where: Callable[[int], str] = lambda n: f"stdin line {n}"
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for every non-blank line; an :class:`InputError` that
    names the line (``where(number)``) for one that is not a JSON object."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where(number)}: not valid JSON ({exc.msg})") from None
        if not isinstance(value, dict):
            raise InputError(f"{where(number)}: expected a JSON object, got {type(value).__name__}")
        yield number, value


def dumps(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, default=str)
