"""`winnow serve`: every recipe as a Prefect deployment, served from this machine."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import typer

from winnow.console import err, fail

if TYPE_CHECKING:
    from winnow.serving.supervisor import ServeOptions


def serve(
    only: list[str] = typer.Option(
        None, "--only", help="Serve only this deployment (repeatable), e.g. --only rag-qa."
    ),
    schedules: bool = typer.Option(
        True,
        "--schedules/--no-schedules",
        help="Keep the cron schedules declared in prefect.yaml active (default) or pause them.",
    ),
    cron: list[str] = typer.Option(
        None, "--cron", help="Add a cron schedule: --cron 'rag-qa=0 * * * *' (repeatable)."
    ),
    port: int = typer.Option(
        4200, help="Port of the Prefect server started here (0: any free port)."
    ),
    host: str = typer.Option(
        "127.0.0.1",
        help="Address of the Prefect server started here; beyond loopback only with "
        "PREFECT_API_AUTH_STRING set (the server then asks every caller for it).",
    ),
    limit: int = typer.Option(None, help="At most this many flow runs at once."),
    file: str = typer.Option(
        None, "--file", help="Deployments file (default: infra/prefect.yaml)."
    ),
) -> None:
    """Serve every recipe as a Prefect deployment (see HELP)."""
    from winnow.serving.auth import check_exposure
    from winnow.serving.runner import parse_crons
    from winnow.serving.server import ServerError
    from winnow.serving.supervisor import ServeOptions, supervise

    try:
        crons = parse_crons(cron or [])
        options = ServeOptions(
            file=file,
            only=only or [],
            schedules=schedules,
            crons=crons,
            host=host,
            port=port,
            limit=limit,
        )
        _check_names(options)
        if not os.environ.get("PREFECT_API_URL"):
            check_exposure(host)  # before anything starts
    except (ValueError, KeyError) as exc:
        raise fail(str(exc).strip("'\"")) from None
    try:
        code = supervise(options, say=lambda line: err.print(line, highlight=False))
    except ServerError as exc:
        raise fail(str(exc)) from None
    raise typer.Exit(code)


def _check_names(options: ServeOptions) -> None:
    """Unknown deployment names fail here, before a server is started."""
    from winnow.serving.declared import load

    declared = load(options.file)
    for name in [*options.only, *options.crons]:
        declared.get(name)


HELP = (
    "Serve every recipe as a Prefect deployment (infra/prefect.yaml) until Ctrl-C.\n\n"
    "With PREFECT_API_URL set, the deployments are registered on that server; otherwise a "
    "Prefect server is started on --host/--port first (its UI is at the printed address). "
    "With PREFECT_API_AUTH_STRING='user:password' set, that server asks every caller for it "
    "and the serve loop sends it; a --host beyond 127.0.0.1 is refused without it.\n\n"
    "Start runs from the UI (deployment -> Run -> Custom run: the recipe's parameters as a "
    "form) or with `prefect deployment run RECIPE/RECIPE`. SIGINT or SIGTERM stops the "
    "serve loop, then the server it started, and exits 0.\n\n"
    "No work pool is needed; teams with a worker use "
    "`prefect deploy --prefect-file infra/prefect.yaml --all` instead (README: For teams)."
)


def register(app: typer.Typer) -> None:
    app.command("serve", help=HELP)(serve)
