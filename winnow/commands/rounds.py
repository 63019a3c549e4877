"""`winnow rounds RECIPE`: compare a recipe's self-improvement rounds side by side.

For each round the latest run (completed ones first) is shown: its model and, stage by
stage, rows in → rows kept. A recipe's rounds differ in the model that generated their
data, so the funnel shows where a stronger model loses fewer rows. Where the runs made
rubric feedback (``rubric_feedback=true``), a row per judge criterion follows: how many
rows it rejected that would have taught, how many it kept that teach nothing.
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from winnow.console import fail, out


def pick_rounds(runs: list[dict[str, Any]], all_runs: bool = False) -> list[dict[str, Any]]:
    """One run per round (the newest completed one, else the newest), by round; or every
    run, oldest first, with ``all_runs``."""
    if all_runs:
        return sorted(runs, key=lambda r: (r.get("round") or 0, str(r.get("started_at"))))
    chosen: dict[int, dict[str, Any]] = {}
    for r in runs:  # newest first
        rnd = int(r.get("round") or 0)
        current = chosen.get(rnd)
        if current is None or (
            current.get("status") != "completed" and r.get("status") == "completed"
        ):
            chosen[rnd] = r
    return [chosen[k] for k in sorted(chosen)]


def run_model(run: dict[str, Any]) -> str:
    """The model a run recorded, else the one its parameters name for its round."""
    if run.get("model"):
        return str(run["model"])
    params = run.get("params") or {}
    spec = (params.get("round_models") or {}).get(str(run.get("round") or 0))
    if isinstance(spec, dict):
        return f"{spec.get('kind', '')}/{spec.get('model') or 'default'}"
    return ""


def compare(recipe: str, limit: int, all_runs: bool) -> dict[str, Any]:
    from tasks.curation.rounds import feedback_by_criterion
    from tasks.store.catalog import Catalog

    catalog = Catalog()
    runs = pick_rounds(catalog.runs(limit=limit, recipe=recipe), all_runs)
    columns = []
    stages: list[str] = []
    criteria: list[str] = []
    for r in runs:
        funnel = catalog.funnel(r["run_id"])
        for row in funnel:
            if row["stage"] not in stages:
                stages.append(row["stage"])
        feedback = feedback_by_criterion((r.get("summary") or {}).get("rubric_feedback"))
        criteria += [c for c in feedback if c not in criteria]
        columns.append(
            {
                "run_id": r["run_id"],
                "round": int(r.get("round") or 0),
                "status": r.get("status"),
                "model": run_model(r),
                "n_kept": r.get("n_kept"),
                "cost_usd": r.get("cost_usd") or 0.0,
                "funnel": {f["stage"]: {"n_in": f["n_in"], "n_out": f["n_out"]} for f in funnel},
                "rubric_feedback": feedback,
            }
        )
    return {"recipe": recipe, "stages": stages, "criteria": criteria, "rounds": columns}


def rounds(
    recipe: str = typer.Argument(..., help="The recipe whose rounds to compare."),
    limit: int = typer.Option(200, help="How many of the recipe's latest runs to consider."),
    all_runs: bool = typer.Option(False, "--all", help="Every run, not one per round."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Compare the funnels of a recipe's self-improvement rounds (and their rubric
    feedback, where the runs made it)."""
    from tasks.curation.rounds import feedback_cell

    data = compare(recipe, limit, all_runs)
    if as_json:
        out.print_json(json.dumps(data, default=str))
        return
    if not data["rounds"]:
        raise fail(f"no runs of recipe {recipe!r} in this project (see `winnow runs`)", 1)
    table = Table(title=f"Rounds of {recipe}", title_justify="left")
    table.add_column("stage")
    for c in data["rounds"]:
        table.add_column(f"round {c['round']}\n{c['model'] or '?'}\n{c['run_id']}", justify="right")
    for stage in data["stages"]:
        cells = []
        for c in data["rounds"]:
            f = c["funnel"].get(stage)
            if f is None:
                cells.append("–")
            else:
                rate = f"{f['n_out'] / f['n_in']:.0%}" if f["n_in"] else "–"
                cells.append(f"{f['n_in']} → {f['n_out']} ({rate})")
        table.add_row(stage, *cells)
    for name in data["criteria"]:  # rubric feedback, where the rounds made it
        cells = [feedback_cell(c["rubric_feedback"].get(name)) for c in data["rounds"]]
        table.add_row(f"rubric: {name}", *cells)
    table.add_row("cost $", *[f"{c['cost_usd']:.4f}" for c in data["rounds"]])
    table.add_row("status", *[str(c["status"]) for c in data["rounds"]])
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("rounds")(rounds)
