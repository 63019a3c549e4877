"""`winnow run RECIPE`: run a recipe flow with its parameters from options and --set."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import typer

from winnow.console import err, fail, live_progress, out, print_summary
from winnow.errors import user_errors
from winnow.preview import print_preview
from winnow.serving.background import prepare_run

DEFAULT_PREVIEW_ROWS = 3


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; a value that parses as JSON is taken as JSON (numbers, lists,
    booleans), anything else as a string."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value, got {pair!r}")
        try:
            values[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            values[key.strip()] = raw
    return values


def build_params(model: type, given: dict[str, Any]) -> Any:
    unknown = sorted(set(given) - set(model.model_fields))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown}; valid: {', '.join(sorted(model.model_fields))}"
        )
    return model(**given)


def run(
    recipe: str = typer.Argument(..., help="Recipe name, e.g. code-sft."),
    provider: str = typer.Option(
        None, help="Generator: local | openai | anthropic | openai-compatible."
    ),
    model: str = typer.Option(None, help="Generator model."),
    base_url: str = typer.Option(None, help="Generator server URL (openai-compatible)."),
    judge_provider: str = typer.Option(None, help="Judge provider (default: the generator's)."),
    judge_model: str = typer.Option(None, help="Judge model (default: the generator's)."),
    judge_base_url: str = typer.Option(None, help="Judge server URL."),
    out_dir: str = typer.Option(None, "--out", help="Output directory."),
    sets: list[str] = typer.Option(None, "--set", help="Any parameter: --set n_solutions=8"),
    show_params: bool = typer.Option(False, "--params", help="Print the parameters and exit."),
    preview: bool = typer.Option(
        False,
        "--preview",
        help="Run only N inputs (default 3) through every stage, publish nothing, and "
        "project the full run: requests, tokens, cost, time, with their uncertainty.",
    ),
    preview_rows: int = typer.Argument(
        None, metavar="[N]", min=1, help="How many inputs --preview runs (default 3)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the result (the preview and its projection) as JSON."
    ),
    scripted: bool = typer.Option(
        False,
        "--scripted",
        help="Run against the recipe's own test scenario, answered by the project's test "
        "LLM server (a test double): every stage runs for real, in seconds, for free.",
    ),
) -> None:
    """Run a recipe. Every parameter is settable with --set key=value; see --params.
    `winnow run RECIPE --preview [N]` runs N inputs and projects what the full run costs."""
    from flows.registry import UnknownRecipe, get_recipe

    try:
        spec = get_recipe(recipe)
    except UnknownRecipe as exc:
        raise fail(str(exc)) from None
    params_model = spec.params_model()
    if show_params:
        for name, field in params_model.model_fields.items():
            out.print(f"{name:22} {field.default!r:24} {field.description or ''}")
        return
    try:
        given = parse_sets(sets or [])
    except ValueError as exc:
        raise fail(str(exc)) from None
    options = {
        "provider": provider,
        "model": model,
        "base_url": base_url,
        "judge_provider": judge_provider,
        "judge_model": judge_model,
        "judge_base_url": judge_base_url,
        "out": out_dir,
    }
    given.update({k: v for k, v in options.items() if v is not None})
    if preview_rows is not None and not preview:
        raise fail(f"{preview_rows!r}: a number after the recipe is --preview's N (--preview N)")
    if preview:
        given["preview"] = preview_rows or given.get("preview") or DEFAULT_PREVIEW_ROWS
    trial = _start_scripted(spec.name) if scripted else None
    if trial is not None:
        given = {**trial.params, **given}
    small = _small_defaults(spec, given)
    if small:
        err.print(
            "Using small defaults for the embedded model so the run takes minutes: "
            + ", ".join(f"{k}={v}" for k, v in small.items())
            + " (override with --set)."
        )
        given = {**small, **given}
    with user_errors():
        try:
            params = build_params(params_model, given)
        except ValueError as exc:
            if exc.__class__.__name__ == "ValidationError":
                raise
            raise fail(str(exc)) from None
        prepare_run()
        started = time.monotonic()
        with live_progress():
            summary = spec.flow()(params)
    seconds = time.monotonic() - started
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
    elif summary.get("preview"):
        print_preview(summary, seconds)
    else:
        print_summary(summary, seconds)
    if trial is not None and not summary.get("preview"):
        matches, line = trial.verdict(summary)
        (out if matches else err).print(f"scripted: {line}", highlight=False)
        if not matches:
            raise typer.Exit(1)


def _start_scripted(recipe: str) -> Any:
    """The test LLM server with the recipe's scenario, and the scenario's parameters."""
    from tasks.core.paths import state_dir
    from winnow.scripted import start
    from winnow.testing.scenarios import NoScenario

    try:
        trial = start(recipe, state_dir())
    except NoScenario as exc:
        raise fail(str(exc)) from None
    err.print(
        f"Scripted run: the test LLM server (a test double) answers at {trial.base_url} "
        f"with the scenario of {recipe}; work directory {trial.work}",
        highlight=False,
    )
    return trial


def _small_defaults(spec: Any, given: dict[str, Any]) -> dict[str, Any]:
    """The recipe's SMALL_LOCAL_DEFAULTS, for what the user left unset on the local model."""
    import importlib

    if given.get("provider", "local") != "local":
        return {}
    module = importlib.import_module(spec.params_path.partition(":")[0])
    small = getattr(module, "SMALL_LOCAL_DEFAULTS", {})
    if given.get("problems"):  # the user's own problems: nothing to generate
        small = {k: v for k, v in small.items() if k != "n_problems"}
    return {k: v for k, v in small.items() if k not in given}


def register(app: typer.Typer) -> None:
    app.command("run")(run)
