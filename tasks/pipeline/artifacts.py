"""Prefect artifacts: what a run shows on its page in the UI (funnel, costs, gates,
examples, a link to its report.html). Outside a flow run they are skipped, so stages
and tests need no server."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.gates.gx import GateResult


def flow_run_id() -> str | None:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx and ctx.flow_run else None


def key(*parts: str) -> str:
    raw = "-".join(parts).lower()
    return "".join(ch if ch.isalnum() or ch == "-" else "-" for ch in raw)[:100]


def gate(run_id: str, stage: str, result: GateResult) -> None:
    if flow_run_id() is None:
        return
    from prefect.artifacts import create_markdown_artifact

    status = "passed" if result.success else f"FAILED ({result.severity})"
    lines = [f"### Gate `{result.suite}` after stage `{stage}`: {status}", ""]
    for f in result.failures[:20]:
        lines.append(f"- `{f.get('expectation')}` {f.get('kwargs', {})}: {f.get('observed', '')}")
    create_markdown_artifact(key=key("gate", stage), markdown="\n".join(lines), description=run_id)


def examples(
    recipe: str, run_id: str, kept: list[dict[str, Any]], rejected: list[dict[str, Any]]
) -> None:
    """A few kept and rejected examples on the run's page in the UI."""
    if flow_run_id() is None:
        return
    from prefect.artifacts import create_markdown_artifact

    def block(row: dict) -> str:
        text = json.dumps(row, indent=2, ensure_ascii=False, default=str)
        return "```json\n" + (text[:3000] + "\n..." if len(text) > 3000 else text) + "\n```"

    md = [f"### Examples from `{run_id}`", "", "#### Kept", ""]
    md += [block(r) for r in kept] or ["(none)"]
    md += ["", "#### Rejected", ""]
    md += [
        f"**{r.get('stage')}**: {r.get('reason')}\n\n{block(r.get('record', {}))}" for r in rejected
    ] or ["(none)"]
    create_markdown_artifact(
        key=key(recipe, "examples"), markdown="\n".join(md), description=run_id
    )


def summary(recipe: str, run_id: str, funnel: list[dict[str, Any]], costs: dict[str, Any]) -> None:
    """The funnel as a table and the costs, once the run completed."""
    if flow_run_id() is None:
        return
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    create_table_artifact(
        key=key(recipe, "funnel"), table=funnel, description=f"Rejection funnel of {run_id}"
    )
    md = [
        f"### Costs of `{run_id}`",
        "",
        "| calls | from journal | prompt tokens | completion tokens | cost (USD) |",
        "|---:|---:|---:|---:|---:|",
        f"| {costs.get('calls', 0)} | {costs.get('cached_calls', 0)} | "
        f"{costs.get('prompt_tokens', 0)} | {costs.get('completion_tokens', 0)} | "
        f"{costs.get('cost_usd', 0.0):.4f} |",
    ]
    create_markdown_artifact(key=key(recipe, "costs"), markdown="\n".join(md), description=run_id)


def report_uri(location: str) -> str:
    """A link a browser opens: ``file://`` for a local path, the URL as is otherwise."""
    if "://" in location:
        return location
    from pathlib import Path

    return Path(location).absolute().as_uri()


def report(recipe: str, run_id: str, location: str) -> None:
    """A link to the run's ``report.html`` on its page in the UI."""
    if flow_run_id() is None:
        return
    from prefect.artifacts import create_link_artifact

    create_link_artifact(
        key=key(recipe, "report"),
        link=report_uri(location),
        link_text=f"report.html of {run_id}",
        description=f"The report of {run_id}: funnel, rejection reasons, examples, costs, "
        f"gates, timings (open in a browser; also `winnow show {run_id} --open`). "
        f"Path: {location}",
    )
