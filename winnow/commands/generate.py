"""`winnow generate`: a prompt template over a JSON Lines file."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from winnow.console import err, fail, live_progress, out, print_summary
from winnow.errors import user_errors
from winnow.serving.background import prepare_run


def generate(
    prompt: str = typer.Option("instruction", help="Template name in prompts/ or a .toml path."),
    input: Path = typer.Option(
        ...,
        "--input",
        "-i",
        help="JSON Lines, Parquet, CSV or a saved datasets folder; row fields fill the template.",
    ),
    out_path: Path = typer.Option(
        ..., "--out", "-o", help="Output JSON Lines (written atomically)."
    ),
    provider: str = typer.Option("local", help="local | openai | anthropic | openai-compatible"),
    model: str = typer.Option("", help="Model name (default: the provider's default)."),
    base_url: str = typer.Option(
        None, help="Server URL for openai-compatible (vLLM, Ollama, ...)."
    ),
    concurrency: int = typer.Option(16, help="Max requests in flight (remote providers)."),
    shard_size: int = typer.Option(64, help="Rows per task run."),
    max_retries: int = typer.Option(6, help="Retries of a failing request (5xx, timeouts)."),
    temperature: float = typer.Option(None, help="Override the template's temperature."),
    max_tokens: int = typer.Option(None, help="Override the template's max_tokens."),
    batch: bool = typer.Option(
        False, "--batch", help="Send through the provider's batch API (OpenAI, Anthropic)."
    ),
) -> None:
    """Run a prompt template over every row of a JSON Lines file.

    Each output row is the input row plus `completion` (or `error`) and `provenance`.
    Requests are journaled: an interrupted run resumes without paying twice, and a
    re-run of a finished one makes no LLM call.
    """
    with user_errors():
        from tasks.recipes.generate.recipe import GenerateParams, plan

        params = GenerateParams(
            prompt=prompt,
            input=str(input),
            out=str(out_path),
            provider=provider,
            model=model,
            base_url=base_url,
            concurrency=concurrency,
            shard_size=shard_size,
            max_retries=max_retries,
            temperature=temperature,
            max_tokens=max_tokens,
            batch=batch,
        )
        p = plan(params)  # fail fast, before Prefect starts
        prepare_run()  # before Prefect is imported: it reads PREFECT_API_URL once
        from flows.generate import generate as generate_flow

        config = p.generate
        model_name = f" / {config.provider.model}" if config.provider.model else ""
        err.print(
            f"generate: {p.n_rows} rows with template {config.template} "
            f"v{config.template_version} on {config.provider.kind}{model_name}"
        )
        started = time.monotonic()
        with live_progress():
            summary = generate_flow(params)
    print_summary(summary, time.monotonic() - started)
    out.print(f"{summary['completed']} completed, {summary['failed']} failed")
    if summary["failed"]:
        raise fail(f"{summary['failed']} row(s) failed; they are in the output with their error", 1)


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
