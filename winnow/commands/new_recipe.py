"""`winnow new-recipe NAME`: write a working recipe skeleton that passes its own test."""

from __future__ import annotations

from pathlib import Path

import typer

from tasks.core.paths import SOURCE_ROOT
from winnow.console import fail, out


def new_recipe(
    name: str = typer.Argument(..., help="Recipe name, lower-case words joined by '-'."),
    root: Path = typer.Option(
        SOURCE_ROOT, "--root", help="Project to write into (default: this Winnow checkout)."
    ),
) -> None:
    """Write flow, stages, prompt, suites, test scenario and test of a new recipe."""
    from winnow.scaffold import Names, ScaffoldError, scaffold

    try:
        Names.of(name)
    except ScaffoldError as exc:
        raise fail(str(exc), code=2) from None
    try:
        written = scaffold(name, root.resolve())
    except ScaffoldError as exc:
        raise fail(str(exc), code=1) from None
    module = name.replace("-", "_")
    for path in written:
        out.print(f"wrote {path.relative_to(root.resolve())}", highlight=False)
    out.print(
        f"\nNext: run its test  (pytest tests/recipes/test_{module}_flow.py)\n"
        f"      see it          (winnow run {name} --params)\n"
        f"      make it yours   (docs/recipes.md)",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("new-recipe")(new_recipe)
