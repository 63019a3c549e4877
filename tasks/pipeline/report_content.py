"""What a run's report shows of its rows, gathered in one streaming pass: the count of
every (stage, reason) with a few examples each, and kept examples paired with a rejected
one from the same input (problem or source row) where there is one. Memory holds the
examples shown and one counter per reason (at most ``max_reasons`` a stage; a stage whose
every row has its own reason gets the rest counted under one line)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

OTHER_REASONS = "(other reasons)"


class ReasonGroup(BaseModel):
    stage: str
    reason: str
    count: int = 0
    examples: list[dict[str, Any]] = Field(default_factory=list)


class Pair(BaseModel):
    """A row of the side-by-side view: a kept example and a rejected one, ``same_input``
    when both came from the same input (problem or source row)."""

    kept: dict[str, Any] | None = None
    rejected: dict[str, Any] | None = None
    same_input: str | None = None


class ReportContent(BaseModel):
    reasons: dict[str, list[ReasonGroup]] = Field(default_factory=dict)  # by stage
    pairs: list[Pair] = Field(default_factory=list)
    n_kept_rows: int = 0
    n_rejected_rows: int = 0


def input_key(row: Mapping[str, Any]) -> str | None:
    """The input a row came from: its problem, else its source row."""
    meta = row.get("metadata") if isinstance(row.get("metadata"), Mapping) else row
    for field in ("problem_id", "source_id"):
        value = meta.get(field) if isinstance(meta, Mapping) else None
        if value:
            return f"{field}={value}"
    return None


def collect(
    kept: Iterable[dict[str, Any]],
    rejected: Iterable[dict[str, Any]],
    n_examples: int = 8,
    per_reason: int = 3,
    max_reasons: int = 200,
) -> ReportContent:
    """Reason counts and examples from the rows (kept: published examples; rejected: rows
    of ``rejected.jsonl``: ``id``, ``stage``, ``reason``, ``detail``, ``record``)."""
    content = ReportContent()
    shown: list[dict[str, Any]] = []
    for row in kept:
        content.n_kept_rows += 1
        if len(shown) < n_examples:
            shown.append(row)
    wanted = {k: i for i, row in enumerate(shown) if (k := input_key(row)) is not None}
    matched: dict[int, dict[str, Any]] = {}
    others: list[dict[str, Any]] = []
    groups: dict[tuple[str, str], ReasonGroup] = {}
    per_stage: dict[str, int] = {}
    cap = max(2, n_examples // 2)
    for row in rejected:
        content.n_rejected_rows += 1
        stage, reason = str(row.get("stage", "")), str(row.get("reason", ""))
        key = (stage, reason)
        if key not in groups:
            if per_stage.get(stage, 0) >= max_reasons:  # a reason per row: count, don't keep
                key = (stage, OTHER_REASONS)
            else:
                per_stage[stage] = per_stage.get(stage, 0) + 1
            groups.setdefault(key, ReasonGroup(stage=stage, reason=key[1]))
        group = groups[key]
        group.count += 1
        if len(group.examples) < per_reason:
            group.examples.append(row)
        record = row.get("record") if isinstance(row.get("record"), Mapping) else {}
        index = wanted.get(input_key(record) or "")
        if index is not None and index not in matched:
            matched[index] = row
        elif len(others) < n_examples and sum(o.get("stage") == stage for o in others) < cap:
            others.append(row)  # a few from each stage, not the first stage's only
    for group in sorted(groups.values(), key=lambda g: (-g.count, g.reason)):
        content.reasons.setdefault(group.stage, []).append(group)
    spare: Iterator[dict[str, Any]] = iter(r for r in others if r not in matched.values())
    for i, row in enumerate(shown):
        mate = matched.get(i)
        content.pairs.append(
            Pair(
                kept=row,
                rejected=mate or next(spare, None),
                same_input=input_key(row) if mate else None,
            )  # fmt: skip
        )
    content.pairs += [Pair(rejected=r) for r in spare][: max(0, n_examples - len(shown))]
    return content


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)
