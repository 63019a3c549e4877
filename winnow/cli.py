"""`winnow`: a thin face over recipes and tasks. It parses, calls, prints.

Each command lives in its own module under ``winnow.commands``; this file only assembles
them, so adding a command never touches another's code.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading

import typer

from winnow import prefect_env

prefect_env.apply()

from winnow.commands import (  # noqa: E402
    adherence,
    curate,
    generate,
    model,
    new_recipe,
    push,
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
push.register(app)
run.register(app)
curate.register(app)
adherence.register(app)
rounds.register(app)
new_recipe.register(app)
serve.register(app)
server.register(app)


_exit_code: int | None = None
INTERRUPT_GRACE_S = 10.0
_interrupted = False


def _on_interrupt(signum: int, frame: object) -> None:
    """Ctrl-C: stop as Python does (KeyboardInterrupt, so Prefect marks the run crashed
    and clients close), but never hang doing it: leave after a grace period whatever is
    still waiting (Prefect retrying a server that the same Ctrl-C stopped, say), and at
    once on a second Ctrl-C. Nothing is lost by leaving: every answer is journaled, and
    the run's janitor stops what the run started."""
    global _interrupted
    if _interrupted:
        os._exit(130)
    _interrupted = True
    print(
        "\ninterrupted: stopping. Every answer so far is journaled: run the same command "
        "again to resume. Ctrl-C again to leave at once.",
        file=sys.stderr,
    )
    timer = threading.Timer(INTERRUPT_GRACE_S, os._exit, args=(130,))
    timer.daemon = True
    timer.start()
    raise KeyboardInterrupt


def main() -> None:
    """The ``winnow`` command: the app, then a quick exit (see :func:`_leave_now`)."""
    global _exit_code
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not ignored
        signal.signal(signal.SIGINT, _on_interrupt)
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
