"""`winnow server start|status|stop`: the background Prefect server runs share."""

from __future__ import annotations

import json

import typer

from winnow.console import err, fail, out

server_app = typer.Typer(
    help="The Prefect server that `winnow run` and `winnow generate` start once and share "
    "(not used when PREFECT_API_URL is set).",
    no_args_is_help=True,
)


@server_app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="One JSON object.")) -> None:
    """Whether the background server runs, where, and its UI's address."""
    from winnow.serving.background import describe, read_state

    facts = describe(read_state())
    if as_json:
        out.print_json(json.dumps(facts))
    elif facts["running"]:
        out.print(f"running: pid {facts['pid']}, UI {facts['url']}, up {facts['up_s']} s")
        out.print(f"log: {facts['log']}")
    else:
        out.print("not running (the next `winnow run` or `winnow generate` starts it)")


@server_app.command("start")
def start() -> None:
    """Start the background server now (runs start it when they need it)."""
    from winnow.serving.background import start as start_server
    from winnow.serving.server import ServerError

    try:
        state = start_server()
    except ServerError as exc:
        raise fail(str(exc)) from None
    out.print(f"running: pid {state.pid}, UI {state.url}")


@server_app.command("stop")
def stop() -> None:
    """Stop the background server (runs in progress against it fail)."""
    from winnow.serving.background import stop as stop_server

    state = stop_server()
    if state is None:
        err.print("no background server was recorded as running")
        return
    out.print(f"stopped: pid {state.pid} ({state.url})")


def register(app: typer.Typer) -> None:
    app.add_typer(server_app, name="server")
