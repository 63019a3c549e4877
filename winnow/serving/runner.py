"""The serve loop, run as its own process by ``winnow serve``.

It is a separate process so that the supervisor can stop it first and the Prefect server
second, whatever signal arrives: a serve loop whose server disappears first can hang on
SIGTERM. Prefect's runner turns SIGTERM into a clean stop (exit 0) and SIGINT into
KeyboardInterrupt, which ``prefect.serve`` also handles.

    python -m winnow.serving.runner [--file infra/prefect.yaml] [--only NAME ...]
        [--no-schedules] [--cron NAME=EXPR ...]
"""

from __future__ import annotations

import argparse

from winnow import prefect_env


def parse_crons(pairs: list[str]) -> dict[str, str]:
    crons: dict[str, str] = {}
    for pair in pairs:
        name, sep, expr = pair.partition("=")
        if not sep or not name.strip() or not expr.strip():
            raise ValueError(f"--cron expects NAME=EXPRESSION, got {pair!r}")
        crons[name.strip()] = expr.strip()
    return crons


def serve_declared(
    file: str | None,
    only: list[str],
    schedules: bool,
    crons: dict[str, str],
    limit: int | None = None,
) -> None:
    from prefect import serve

    from winnow.serving.declared import load, to_runner_deployment

    declared = load(file)
    entries = [declared.get(n) for n in only] if only else declared.deployments
    for name in crons:
        declared.get(name)  # an unknown name fails before anything is served
    deployments = [
        to_runner_deployment(e, schedules=schedules, extra_cron=crons.get(e.name)) for e in entries
    ]
    serve(*deployments, limit=limit, print_starting_message=False)


def main(argv: list[str] | None = None) -> None:
    prefect_env.apply()
    parser = argparse.ArgumentParser(description="Serve Winnow's declared deployments.")
    parser.add_argument("--file", default=None)
    parser.add_argument("--only", action="append", default=[])
    parser.add_argument("--no-schedules", action="store_true")
    parser.add_argument("--cron", action="append", default=[])
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    serve_declared(args.file, args.only, not args.no_schedules, parse_crons(args.cron), args.limit)


if __name__ == "__main__":
    main()
