"""The one summary of a run on its page in the Prefect UI: the funnel with percentages,
time and cost per stage, the kept total and cost per kept example (unknown prices
flagged), the top rejection reasons per stage, the gates, where the dataset was
published and a link to its report.html. Pure markdown from the run's figures, so the
same text is testable without a server; :mod:`tasks.pipeline.artifacts` writes it."""

from __future__ import annotations

from typing import Any

from tasks.llm.prices import PriceTable
from tasks.pipeline.feedback_view import HOW_TO_READ, feedback_table

REASONS_PER_STAGE = 5


def unpriced_models(by_model: list[dict[str, Any]]) -> list[str]:
    """Remote models this run called that have no price: their cost was counted as 0."""
    table = PriceTable.load()
    return sorted(
        {
            f"{m['model']} ({m['provider']})"
            for m in by_model
            if m.get("provider") not in ("local", None, "") and table.price(m["model"]) is None
        }
    )


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.0f}%" if whole else "-"


def _cell(text: Any, limit: int = 120) -> str:
    s = " ".join(str(text).split()).replace("|", "\\|")
    return s if len(s) <= limit else s[: limit - 1] + "…"


def summary_markdown(
    run_id: str,
    status: str,
    funnel: list[dict[str, Any]],
    costs: dict[str, Any],
    reasons: list[dict[str, Any]],
    gates: list[dict[str, Any]],
    out: str | None = None,
    report: str | None = None,
    error: str | None = None,
    feedback: dict[str, Any] | None = None,
) -> str:
    """``funnel``: FunnelRow dicts; ``costs``: ``Catalog.costs``; ``reasons``:
    ``Catalog.rejection_reasons``; ``gates``: GateResult dicts with their stage;
    ``feedback``: ``funnel.json``'s ``rubric_feedback``, when the run made one."""
    kept = funnel[-1]["n_out"] if funnel else 0
    first_in = funnel[0]["n_in"] if funnel else 0
    by_stage = {s["stage"]: s for s in costs.get("by_stage", [])}
    unpriced = unpriced_models(costs.get("by_model", []))
    mark = " ⚠" if unpriced else ""
    total_cost = float(costs.get("cost_usd") or 0.0)
    per_kept = f"${total_cost / kept:.4f}{mark}" if kept else "-"
    # a share of the inputs only where stages do not multiply rows (passages -> questions)
    share = f" ({_pct(kept, first_in)})" if kept <= first_in else ""
    md = [
        f"### Run `{run_id}`: **{status}**",
        "",
        f"**kept {kept}** from {first_in} inputs{share} · "
        f"**cost ${total_cost:.4f}{mark}** ({costs.get('calls', 0)} LLM calls, "
        f"{costs.get('cached_calls', 0)} from the journal) · cost per kept example "
        f"**{per_kept}**",
    ]
    if error:
        md += ["", f"**Failed:** {_cell(error, 500)}"]
    if unpriced:
        md += [
            "",
            f"⚠ **Unknown price** for {', '.join(unpriced)}: counted as $0, so the costs "
            "above are too low. Set a price in the JSON file named by `WINNOW_PRICES`.",
        ]
    md += [
        "",
        "| stage | in | kept | kept % | rejected | time (s) | LLM calls | cost (USD) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in funnel:
        c = by_stage.get(row["stage"], {})
        reused = " (reused)" if row.get("reused") else ""
        md.append(
            f"| {row['stage']}{reused} | {row['n_in']} | {row['n_out']} | "
            f"{_pct(row['n_out'], row['n_in'])} | {row['n_rejected']} | "
            f"{float(row.get('seconds') or 0):.1f} | {c.get('calls', 0)} | "
            f"{float(c.get('cost_usd') or 0):.4f}{mark if c.get('calls') else ''} |"
        )
    md += ["", "#### Top rejection reasons", ""]
    if reasons:
        md += ["| stage | count | reason |", "|---|---:|---|"]
        shown: dict[str, int] = {}
        for r in reasons:
            if shown.get(r["stage"], 0) >= REASONS_PER_STAGE:
                continue
            shown[r["stage"]] = shown.get(r["stage"], 0) + 1
            md.append(f"| {r['stage']} | {r['count']} | {_cell(r['reason'])} |")
    else:
        md.append("No row was rejected.")
    if gates:
        md += ["", "#### Gates", "", "| stage | suite | severity | result | rows | time (s) |"]
        md.append("|---|---|---|---|---:|---:|")
        for g in gates:
            verdict = "passed" if g["success"] else f"**FAILED** ({g['n_failed']} failed)"
            md.append(
                f"| {g.get('stage', '')} | {g['suite']} | {g['severity']} | {verdict} | "
                f"{g.get('n_rows', 0)} | {float(g.get('duration_s') or 0):.2f} |"
            )
    if feedback:
        md += ["", *feedback_markdown(feedback)]
    md += ["", "#### Output", ""]
    md.append(f"- Dataset published to `{out}`" if out else "- Nothing published.")
    if report:
        md.append(f"- [report.html]({report}): funnel, reasons, examples, costs, gates")
    return "\n".join(md)


def feedback_markdown(feedback: dict[str, Any]) -> list[str]:
    """The rubric-feedback table (:mod:`tasks.pipeline.feedback_view`) in markdown."""
    head, rows = feedback_table(feedback)
    md = [
        f"#### Rubric feedback (judge stage `{feedback.get('judge_stage', '')}`)",
        "",
        "| " + " | ".join(head) + " |",
        "|---|" + "---:|" * (len(head) - 1),
    ]
    md += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return [*md, "", _cell(HOW_TO_READ, 1000)]


def _kwargs(kwargs: dict[str, Any]) -> str:
    return _cell(", ".join(f"{k}={v!r}" for k, v in kwargs.items()), 160)


def _observed_of(failure: dict[str, Any]) -> str:
    if failure.get("exception"):
        return f"error: {failure['exception']}"
    seen = {k: v for k, v in (failure.get("observed") or {}).items() if k != "details"}
    return ", ".join(f"{k}={v}" for k, v in seen.items())


def _find(items: list[dict[str, Any]], kind: str, kwargs: dict[str, Any]) -> dict | None:
    """The item of an expectation: its type, and the arguments the suite gave it (GX may
    add its own defaults)."""
    for item in items:
        given = item.get("kwargs") or {}
        if item["expectation"] == kind and all(given.get(k) == v for k, v in kwargs.items()):
            return item
    return None


def gate_markdown(
    stage: str, result: dict[str, Any], expectations: list[dict[str, Any]], description: str = ""
) -> str:
    """One gate as a person reads it: its verdict, severity, rows and duration, then every
    expectation that ran with its result and observed value. ``result``: a GateResult
    dict; ``expectations``: the suite's (``type`` and ``kwargs``)."""
    verdict = "passed" if result["success"] else "**FAILED**"
    md = [
        f"### Gate `{result['suite']}` after stage `{stage}`: {verdict}",
        "",
        f"severity **{result['severity']}** ("
        + ("a failure stops the run" if result["severity"] == "critical" else "a failure warns")
        + f") · {result['n_expectations']} expectations, {result['n_failed']} failed · "
        f"{result.get('n_rows', 0)} rows · {float(result.get('duration_s') or 0):.2f} s",
    ]
    if description:
        md += ["", _cell(description, 400)]
    md += ["", "| expectation | arguments | result | observed |", "|---|---|---|---|"]
    for e in expectations:
        kwargs = {k: v for k, v in (e.get("kwargs") or {}).items() if k != "batch_id"}
        failure = _find(result.get("failures", []), e["type"], kwargs)
        observed = _find(result.get("observed", []), e["type"], kwargs)
        if failure is not None:
            state, obs = "**failed**", _observed_of(failure)
        elif observed is not None:
            state, obs = "passed", f"observed_value={observed['observed_value']}"
        else:
            state, obs = "passed", "every row as expected"
        md.append(f"| {e['type']} | {_kwargs(kwargs)} | {state} | {_cell(obs, 200)} |")
    return "\n".join(md)
