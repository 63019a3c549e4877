"""`winnow`: a thin face over recipes and tasks. It parses, calls, prints.

Each command lives in its own module under ``winnow.commands``; this file only assembles
them, so adding a command never touches another's code.
"""

from __future__ import annotations

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


if __name__ == "__main__":
    app()
