"""`winnow new-recipe NAME`: write a working recipe skeleton that passes its own test."""

from __future__ import annotations

from pathlib import Path

import typer

from tasks.core.paths import SOURCE_ROOT
from winnow.console import fail, out


def new_recipe(
    name: str = typer.Argument(..., help="Recipe name, lower-case words joined by '-'."),
    judge: bool = typer.Option(
        False, "--judge", help="Add a judge stage (on by default in the recipe: use_judge)."
    ),
    topics: bool = typer.Option(
        False, "--topics", help="Add a topics_file parameter (one topic a line)."
    ),
    execute: str = typer.Option(
        "none",
        "--execute",
        help="Generated code and tests run in the sandbox: python | php | none.",
    ),
    root: Path = typer.Option(
        SOURCE_ROOT, "--root", help="Project to write into (default: this Winnow checkout)."
    ),
) -> None:
    """Write flow, stages, prompts, suites, test scenario and test of a new recipe, and its
    deployment in infra/prefect.yaml."""
    from winnow.scaffold import Names, Options, ScaffoldError, scaffold

    try:
        Names.of(name)
    except ScaffoldError as exc:
        raise fail(str(exc), code=2) from None
    if execute not in ("python", "php", "none"):
        raise fail(f"--execute expects python, php or none, got {execute!r}", code=2)
    options = Options(judge=judge, topics=topics, execute=execute)  # type: ignore[arg-type]
    try:
        written = scaffold(name, root.resolve(), options)
    except ScaffoldError as exc:
        raise fail(str(exc), code=1) from None
    module = name.replace("-", "_")
    for path in written:
        out.print(f"wrote {path.relative_to(root.resolve())}", highlight=False)
    out.print(
        f"\nStages: {options.summary()}\n"
        f"Next: run it on its test scenario  (winnow run {name} --scripted)\n"
        f"      run its test                 (pytest tests/recipes/test_{module}_flow.py)\n"
        f"      see its parameters           (winnow run {name} --params)\n"
        f"      make it yours                (docs/recipes.md)",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("new-recipe")(new_recipe)
