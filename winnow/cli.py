"""`winnow`: a thin face over recipes and tasks. It parses, calls, prints.

Each command lives in its own module under ``winnow.commands``; this file only assembles
them, so adding a command never touches another's code.
"""

from __future__ import annotations

import atexit
import os
import sys

import typer

from winnow import prefect_env

prefect_env.apply()

from winnow.commands import (  # noqa: E402
    adherence,
    curate,
    generate,
    model,
    new_recipe,
    rounds,
    run,
    runs,
    serve,
    server,
    verify,
)

app = typer.Typer(
    name="winnow",
    help="Synthetic training data by rejection sampling: generate, verify, keep what passes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

generate.register(app)
verify.register(app)
model.register(app)
runs.register(app)
run.register(app)
curate.register(app)
adherence.register(app)
rounds.register(app)
new_recipe.register(app)
serve.register(app)
server.register(app)


_exit_code: int | None = None


def main() -> None:
    """The ``winnow`` command: the app, then a quick exit (see :func:`_leave_now`)."""
    global _exit_code
    try:
        app()
    except SystemExit as exc:
        code = exc.code
        _exit_code = code if isinstance(code, int) else (0 if code is None else 1)
        raise
    except BaseException:
        _exit_code = 1
        raise


def _leave_now() -> None:
    """Registered first, so it runs last: once every exit handler has run (Prefect's
    services drained, LLM clients and journals closed), skip tearing down the
    interpreter's modules, which takes over a second after a run and does nothing."""
    if _exit_code is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_code)


atexit.register(_leave_now)


if __name__ == "__main__":
    main()
