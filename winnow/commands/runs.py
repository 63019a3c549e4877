"""`winnow runs` and `winnow show RUN`: what ran, what it kept, what it cost, and (where the
run made it) how its judge's criteria relate to the IFD and utility scores."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from winnow.console import costs_line, fail, funnel_table, out


def runs(
    limit: int = typer.Option(20, help="How many of the latest runs to list."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """List the project's runs, newest first."""
    from tasks.store.catalog import Catalog

    rows = Catalog().runs(limit=limit)
    if as_json:
        for r in rows:
            out.print_json(json.dumps(r, default=str))
        return
    if not rows:
        out.print("no runs yet in this project")
        return
    table = Table(title="Runs", title_justify="left")
    table.add_column("run", no_wrap=True, min_width=max(len(str(r.get("run_id"))) for r in rows))
    for col in ("recipe", "status", "started", "kept", "cost $"):
        table.add_column(col, no_wrap=col != "recipe")
    table.add_column("output / why it failed", overflow="fold")
    for r in rows:
        table.add_row(
            str(r.get("run_id")),
            str(r.get("recipe")),
            str(r.get("status")),
            str(r.get("started_at", ""))[:19],
            "" if r.get("n_kept") is None else str(r.get("n_kept")),
            f"{(r.get('cost_usd') or 0.0):.4f}",
            _where_or_why(r),
        )
    out.print(table)


def _where_or_why(run: dict) -> str:
    """A failed run's reason (which says where it published, if it did), else its output."""
    if run.get("status") == "failed" and run.get("error"):
        return str(run["error"])
    return str(run.get("out_dir") or "")


def show(
    run_id: str = typer.Argument(..., help="A run id, or a unique prefix of one."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
    open_report: bool = typer.Option(
        False, "--open", help="Open the run's report.html in a browser (its path if none)."
    ),
) -> None:
    """Show one run: parameters, the funnel stage by stage, rejection reasons, costs."""
    from tasks.pipeline.report import report_location
    from tasks.store.catalog import Catalog, CatalogError

    catalog = Catalog()
    try:
        run = catalog.get_run(run_id)
    except CatalogError as exc:
        raise fail(str(exc)) from None
    if run is None:
        raise fail(f"no run {run_id!r} in this project (see `winnow runs`)")
    rid = run["run_id"]
    report = report_location(run["out_dir"]) if run.get("out_dir") else None
    if open_report:
        open_in_browser(rid, run.get("status"), report)
        return
    funnel = catalog.funnel(rid)
    costs = catalog.costs(rid)
    reasons = catalog.rejection_reasons(rid, limit=15)
    feedback = (run.get("summary") or {}).get("rubric_feedback")
    if as_json:
        payload = {
            "run": run,
            "funnel": funnel,
            "costs": costs,
            "rejections": reasons,
            "rubric_feedback": feedback,
            "report": report if report and _exists(report) else None,
        }
        out.print_json(json.dumps(payload, default=str))
        return
    out.print(f"[bold]{rid}[/]  recipe={run.get('recipe')}  status={run.get('status')}")
    out.print(f"started {run.get('started_at')}  finished {run.get('finished_at')}")
    if run.get("error"):
        out.print(f"failed: {run['error']}", highlight=False)
    if run.get("out_dir"):
        out.print(f"output: {run['out_dir']}")
    if report and _exists(report):
        out.print(f"report: {report}  (winnow show {rid} --open)")
    out.print(funnel_table(funnel))
    if reasons:
        table = Table(title="Top rejection reasons", title_justify="left")
        for col in ("stage", "count", "reason"):
            table.add_column(col)
        for r in reasons:
            table.add_row(str(r["stage"]), str(r["count"]), str(r["reason"])[:100])
        out.print(table)
    if feedback:
        print_feedback(feedback)
    out.print(costs_line(costs))


def print_feedback(feedback: dict[str, Any]) -> None:
    """The rubric-feedback table, as report.html shows it."""
    from tasks.pipeline.feedback_view import HOW_TO_READ, feedback_table

    head, rows = feedback_table(feedback)
    stage = feedback.get("judge_stage", "")
    table = Table(title=f"Rubric feedback (judge stage {stage})", title_justify="left")
    for i, col in enumerate(head):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    out.print(table)
    out.print(HOW_TO_READ, style="dim", highlight=False)


def _exists(location: str) -> bool:
    from tasks.store import fsio

    try:
        return fsio.exists(location)
    except Exception:  # an unreachable store: say nothing rather than fail `show`
        return False


def open_in_browser(run_id: str, status: Any, report: str | None) -> None:
    """Open ``report`` in the user's browser; print where it is either way."""
    import webbrowser

    from tasks.pipeline.artifacts import report_uri

    if report is None or not _exists(report):
        where = f" (no {report})" if report else ""
        raise fail(f"run {run_id} ({status}) has no report.html{where}: it published nothing")
    out.print(f"report: {report}", soft_wrap=True)
    uri = report_uri(report)
    if not uri.startswith(("file:", "http:", "https:")):
        out.print("it is in object storage: copy it here to open it", soft_wrap=True)
    elif not webbrowser.open(uri):
        out.print("no browser to open it here: open the file above in one", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("runs")(runs)
    app.command("show")(show)
