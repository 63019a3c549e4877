"""Examples as a person reads them on a run's page: a chat example as its dialog (each
turn under its role, code fenced as the model wrote it), any other row as its text
fields, code in code blocks; short facts on one line; request hashes and provenance left
out (they are in the dataset and the report)."""

from __future__ import annotations

import json
from typing import Any

CODE_FIELDS = ("code", "solution", "program", "tests", "python_solution", "php", "query", "sql")
HIDDEN = ("hash", "request", "provenance", "lineage", "fingerprint", "embedding")
TEXT_LIMIT = 1500


def _hidden(name: str) -> bool:
    return any(part in name.lower() for part in HIDDEN)


def _clip(text: str, limit: int = TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


def _fence(text: str, lang: str = "") -> str:
    ticks = "````" if "```" in text else "```"
    return f"{ticks}{lang}\n{_clip(text.rstrip())}\n{ticks}"


def _quote(text: str) -> str:
    return "\n".join("> " + line for line in _clip(text.strip()).splitlines()) or "> (empty)"


def _lang(name: str, text: str) -> str:
    if "php" in name or text.lstrip().startswith("<?php"):
        return "php"
    if name in ("query", "sql"):
        return "sql"
    return "python"


def _facts(row: dict[str, Any]) -> str:
    """Short scalar fields on one line."""
    parts = []
    for name, value in row.items():
        if _hidden(name) or isinstance(value, dict | list):
            continue
        text = str(value)
        if "\n" not in text and len(text) <= 80 and text != "":
            parts.append(f"**{name}**: {text}")
    return " · ".join(parts)


def _fields(row: dict[str, Any]) -> list[str]:
    """A row's long text fields, code fenced, the rest quoted; nested values compact."""
    md: list[str] = []
    for name, value in row.items():
        if _hidden(name) or name in ("id", "messages", "metadata"):
            continue
        if isinstance(value, str) and ("\n" in value or len(value) > 80):
            is_code = name.lower() in CODE_FIELDS
            md += [f"*{name}*", "", _fence(value, _lang(name, value)) if is_code else _quote(value)]
        elif isinstance(value, dict | list) and value:
            text = json.dumps(value, ensure_ascii=False, default=str)
            short = _clip(text, 300).replace("`", "'")
            md += [f"*{name}*: `{short}`"]
        else:
            continue
        md.append("")
    return md


def example_markdown(row: dict[str, Any]) -> str:
    """One example (a kept one, or a rejected record)."""
    md: list[str] = []
    facts = _facts({**row, **(row.get("metadata") or {})})
    if facts:
        md += [facts, ""]
    for turn in row.get("messages") or []:
        md += [f"**{turn.get('role', '?')}**", "", _quote(str(turn.get("content", ""))), ""]
    md += _fields(row)
    if isinstance(row.get("metadata"), dict):
        md += _fields(row["metadata"])
    return "\n".join(md).rstrip()
