"""`winnow verify` and `winnow sandbox`: check solutions against tests in a sandbox.

``winnow verify`` reads JSON Lines ``{"id", "solution", "tests"}`` on stdin and writes one
``{"id", "passed", "stage", "reason", ...}`` line per case on stdout, in input order.
Exit 0 whatever the verdicts; 2 on malformed input (checked before anything runs);
3 when no sandbox can run here.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from enum import StrEnum
from typing import Any

import typer
from pydantic import ValidationError

EXIT_BAD_INPUT = 2
EXIT_NO_SANDBOX = 3


class LanguageOpt(StrEnum):
    python = "python"
    php = "php"


class SandboxOpt(StrEnum):
    auto = "auto"
    docker = "docker"
    bwrap = "bwrap"


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"winnow: {message}", err=True)
    return typer.Exit(code)


def _read_cases(lines: list[str]) -> list:
    from tasks.core.jsonl import InputError, numbered_rows

    try:
        return _cases(numbered_rows(lines))
    except InputError as exc:
        raise _fail(str(exc), EXIT_BAD_INPUT) from None


def _cases(rows: Iterator[tuple[int, dict[str, Any]]]) -> list:
    from tasks.sandbox.verify import Case

    cases = []
    seen_ids: set[str] = set()
    for number, data in rows:
        missing = [k for k in ("id", "solution", "tests") if k not in data]
        if missing:
            raise _fail(
                f"stdin line {number}: missing field(s) {', '.join(missing)}", EXIT_BAD_INPUT
            )
        if isinstance(data["id"], int) and not isinstance(data["id"], bool):
            data["id"] = str(data["id"])
        try:
            case = Case.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise _fail(f"stdin line {number}: {where}: {first['msg']}", EXIT_BAD_INPUT) from None
        if case.id in seen_ids:
            raise _fail(f"stdin line {number}: duplicate id {case.id!r}", EXIT_BAD_INPUT)
        seen_ids.add(case.id)
        cases.append(case)
    return cases


def verify(
    language: LanguageOpt = typer.Option(..., "--language", "-l", help="python or php"),
    sandbox: SandboxOpt = typer.Option(SandboxOpt.auto, help="auto, docker or bwrap"),
    strict_lint: bool = typer.Option(False, help="fail Python cases with ruff findings"),
    workers: int = typer.Option(0, help="parallel runs (0: one per core)"),
) -> None:
    """Verify JSON Lines {"id","solution","tests"} from stdin; verdicts to stdout."""
    from tasks.sandbox.base import SandboxUnavailable
    from tasks.sandbox.select import get_sandbox
    from tasks.sandbox.verify import verify_cases

    cases = _read_cases(sys.stdin.read().splitlines())
    try:
        box = get_sandbox(sandbox.value)  # type: ignore[arg-type]
    except SandboxUnavailable as exc:
        raise _fail(str(exc), EXIT_NO_SANDBOX) from None
    verdicts = verify_cases(
        cases, language.value, box, strict_lint=strict_lint, workers=workers or None
    )
    out = sys.stdout
    for verdict in verdicts:
        out.write(verdict.model_dump_json() + "\n")
    out.flush()


sandbox_app = typer.Typer(help="Inspect and prepare the sandboxes for generated code.")


@sandbox_app.command("check")
def sandbox_check() -> None:
    """Say which backends can run code here (and why not); exit 1 when none can."""
    from tasks.sandbox.base import SandboxUnavailable
    from tasks.sandbox.select import get_bwrap, get_docker

    usable = 0
    for name, get in (("bwrap", get_bwrap), ("docker", get_docker)):
        try:
            box = get()
            verdict = box.run({"main.py": "print('ok')"}, ["python3", "main.py"])
            status = "ok" if verdict.passed else f"broken ({verdict.reason})"
            usable += verdict.passed
        except SandboxUnavailable as exc:
            status = f"unavailable: {exc}"
        typer.echo(f"{name}: {status}")
    if not usable:
        raise typer.Exit(1)


@sandbox_app.command("build-image")
def sandbox_build_image() -> None:
    """Build the Docker sandbox image from Debian packages if the engine lacks it."""
    from tasks.sandbox.base import SandboxUnavailable
    from tasks.sandbox.docker_backend import connect
    from tasks.sandbox.image import IMAGE, ensure_image

    try:
        built = ensure_image(connect())
    except SandboxUnavailable as exc:
        raise _fail(str(exc), EXIT_NO_SANDBOX) from None
    typer.echo(f"{IMAGE}: {'built' if built else 'already present'}")


class HostileBackendOpt(StrEnum):
    auto = "auto"
    docker = "docker"
    bwrap = "bwrap"
    all = "all"


@sandbox_app.command("hostile")
def sandbox_hostile(
    sandbox: HostileBackendOpt = typer.Option(
        HostileBackendOpt.auto,
        "--sandbox",
        "--backend",
        help="auto, docker, bwrap, or all (every backend, then a case x backend table)",
    ),
) -> None:
    """Run the hostile-code suite on a backend (or all) and print the table."""
    from tasks.sandbox.base import SandboxUnavailable
    from tasks.sandbox.hostile import main

    try:
        code = main([sandbox.value])
    except SandboxUnavailable as exc:
        raise _fail(str(exc), EXIT_NO_SANDBOX) from None
    raise typer.Exit(code)


@sandbox_app.command("proxy")
def sandbox_proxy(
    listen: str = typer.Option(
        "unix:///run/winnow-docker/docker.sock",
        help="Where the worker reaches the narrowed API: unix:///path or tcp://host:port.",
    ),
    engine: str = typer.Option(
        "unix:///var/run/docker.sock", help="The Docker engine that runs the containers."
    ),
    memory_mb: int = typer.Option(4096, help="Most memory one sandbox container may ask for."),
    cpus: float = typer.Option(2.0, help="Most CPUs one sandbox container may ask for."),
    processes: int = typer.Option(1024, help="Most processes one sandbox container may ask for."),
) -> None:
    """Serve a narrowed Docker API: only sandbox containers, with their limits (README: For
    teams). Every other request is answered 403 with the reason."""
    from tasks.sandbox.proxy import DockerProxy
    from tasks.sandbox.proxy_policy import Ceilings

    ceilings = Ceilings(memory_mb=memory_mb, cpus=cpus, processes=processes)
    DockerProxy(listen, engine, ceilings).serve_forever(say=lambda line: typer.echo(line))


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
    app.add_typer(sandbox_app, name="sandbox")
