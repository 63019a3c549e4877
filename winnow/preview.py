"""What `winnow run RECIPE --preview` prints: a few kept and rejected examples with their
reasons, the funnel, and the projection of the full run with its uncertainty."""

from __future__ import annotations

import json
from typing import Any

from rich.table import Table

from winnow.console import costs_line, funnel_table, out

EXAMPLE_CHARS = 600


def _clip(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS] + " …"


def _number(value: float | None, money: bool = False) -> str:
    if value is None:
        return "open"
    return f"${value:,.4f}" if money else f"{value:,.0f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "open"
    if seconds < 1:
        return "<1 s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def projection_table(p: dict[str, Any]) -> Table:
    table = Table(
        title=f"The full run of {p['full_rows']:,} inputs, projected from {p['preview_rows']}",
        title_justify="left",
    )
    for col in ("", "estimate", "low", "high"):
        table.add_column(col, justify="left" if not col else "right")
    rows = [
        ("requests", p["requests"], _number),
        ("prompt tokens", p["prompt_tokens"], _number),
        ("completion tokens", p["completion_tokens"], _number),
        ("cost", p["cost_usd"], lambda v: _number(v, money=True)),
        ("wall time", p["wall_s"], _duration),
        ("kept", p["kept"], _number),
    ]
    for name, band, fmt in rows:
        table.add_row(name, fmt(band["estimate"]), fmt(band["low"]), fmt(band["high"]))
    return table


def models_table(p: dict[str, Any]) -> Table:
    table = Table(title="Cost by provider and model", title_justify="left")
    for col in ("provider", "model", "$/1M in/out", "requests", "cost", "low", "high"):
        table.add_column(col, justify="left" if col in ("provider", "model") else "right")
    for m in p["by_model"]:
        price = (
            "unpriced"
            if m["price_in_per_m"] is None
            else f"{m['price_in_per_m']:g} / {m['price_out_per_m']:g}"
            + (" (batch)" if m["batch"] else "")
        )
        if m["provider"] == "local":
            price = "free (local)"
        cost = m["cost_usd"]
        table.add_row(
            m["provider"],
            m["model"],
            price,
            _number(m["requests"]["estimate"]),
            _number(cost["estimate"], True),
            _number(cost["low"], True),
            _number(cost["high"], True),
        )
    return table


def yields_table(p: dict[str, Any]) -> Table:
    table = Table(title="Yield per stage (95% interval)", title_justify="left")
    for col in ("stage", "kept in preview", "yield", "band", "rows in, full run"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for s in p["stages"]:
        decided = round(s["preview_in"] * s["fan_out"])
        measured = "-" if s["yield_measured"] is None else f"{s['yield_measured']:.0%}"
        rows_in = s["rows_in"]
        table.add_row(
            s["stage"],
            f"{s['preview_kept']}/{decided}",
            measured,
            f"{s['yield_low']:.0%}–{s['yield_high']:.0%}",
            f"{_number(rows_in['estimate'])} ({_number(rows_in['low'])}–"
            f"{_number(rows_in['high'])})",
        )
    return table


def print_preview(doc: dict[str, Any], seconds: float) -> None:
    """Examples first (what a person judges by), then the funnel, then the money."""
    examples = doc.get("examples", {})
    out.print(f"[bold]Preview {doc.get('run_id')}[/]: nothing was published.")
    out.print(f"\n[bold green]Kept[/] ({len(examples.get('kept', []))} shown)")
    for row in examples.get("kept", []) or []:
        out.print(f"  {_clip(row)}", highlight=False, markup=False)
    if not examples.get("kept"):
        out.print("  (none kept)")
    out.print(f"\n[bold red]Rejected[/] ({len(examples.get('rejected', []))} shown)")
    for row in examples.get("rejected", []) or []:
        out.print(f"  [{row.get('stage')}] {row.get('reason')}", highlight=False, markup=False)
        out.print(f"    {_clip(row.get('record'))}", highlight=False, markup=False)
    if not examples.get("rejected"):
        out.print("  (none rejected)")
    out.print()
    out.print(funnel_table(doc.get("stages", []), title="Funnel of the preview"))
    out.print(
        costs_line(
            {
                "calls": doc.get("llm_calls", 0),
                "cached_calls": doc.get("llm_calls_from_journal", 0),
                "prompt_tokens": doc.get("tokens", {}).get("prompt", 0),
                "completion_tokens": doc.get("tokens", {}).get("completion", 0),
                "cost_usd": doc.get("cost_usd", 0.0),
            }
        )
        + f" (preview, {seconds:.0f} s)"
    )
    failed = [g for g in doc.get("gates", []) if not g.get("success")]
    for g in failed:
        out.print(f"[yellow]gate {g['suite']} ({g['severity']}) failed on the preview's rows[/]")
    p = doc["projection"]
    out.print()
    out.print(projection_table(p))
    out.print(models_table(p))
    out.print(yields_table(p))
    out.print("[bold]What this preview cannot know:[/]")
    for note in p["notes"]:
        out.print(f"  - {note}", highlight=False)
