"""``report.html``: a finished run a person can look at, beside its dataset.

What the report shows is read from the files just published (the kept and rejected rows
as written), plus the run's facts (``tasks.pipeline.facts``): the funnel, the rejection
reasons of each stage with a few examples each, kept and rejected examples side by side
(paired when they came from the same input), cost and tokens by stage, gates, timings.
Rows are streamed: memory holds the examples shown and one counter per reason.

The page is one self-contained file (``tasks.pipeline.report_html``): no script, no
network, every value escaped.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tasks.pipeline.facts import RunFacts
from tasks.pipeline.report_content import collect, read_jsonl
from tasks.pipeline.report_html import render
from tasks.store import fsio


def write_report(path: Path, facts: RunFacts) -> None:
    """Write ``report.html`` at ``path`` from the dataset files beside it
    (``dataset.jsonl``, ``rejected.jsonl``)."""
    folder = path.parent
    content = collect(read_jsonl(folder / "dataset.jsonl"), read_jsonl(folder / "rejected.jsonl"))
    path.write_text(render(facts, content), encoding="utf-8")


def write_report_of_rows(
    path: Path,
    facts: RunFacts,
    kept: Iterable[dict[str, Any]],
    rejected: Iterable[dict[str, Any]],
) -> None:
    """Write a report for an output that is not a dataset folder (``generate``'s file),
    atomically: a reader sees the previous report or this one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render(facts, collect(kept, rejected)), encoding="utf-8")
    tmp.replace(path)


def report_location(out: str, one_file: bool | None = None) -> str:
    """Where a run's report is: ``report.html`` in its dataset folder, or, for an output
    that is one file (``generate``'s JSON Lines), ``<name>.report.html`` beside it.
    ``one_file``: which of the two ``out`` is (default: a local file that exists)."""
    if one_file is None:
        one_file = not fsio.is_remote(out) and fsio.local_path(out).is_file()
    if one_file:
        return str(fsio.local_path(out).with_suffix(".report.html"))
    return fsio.join(out, "report.html")
