"""``winnow serve``'s process tree: a Prefect server (unless one is configured), the serve
loop as a child process, and an orderly stop on SIGINT/SIGTERM: serve loop first (it
cancels its flow runs and pauses its schedules through the API), then the server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from winnow.serving import auth
from winnow.serving.announce import Announcer, ui_url
from winnow.serving.server import LocalServer, check_access, stop_group, wait_healthy

SERVE_STOP_TIMEOUT_S = 60.0


class ServeOptions(BaseModel):
    file: str | None = Field(None, description="deployments file (default infra/prefect.yaml)")
    only: list[str] = Field(default_factory=list, description="serve only these deployments")
    schedules: bool = Field(True, description="keep the declared schedules active")
    crons: dict[str, str] = Field(default_factory=dict, description="extra cron per deployment")
    host: str = "127.0.0.1"
    port: int = Field(4200, ge=0, le=65535, description="port of a started server (0: free)")
    limit: int | None = Field(None, ge=1, description="flow runs at once")
    server_timeout_s: float = 180.0


def runner_command(options: ServeOptions) -> list[str]:
    command = [sys.executable, "-m", "winnow.serving.runner"]
    if options.file:
        command += ["--file", options.file]
    for name in options.only:
        command += ["--only", name]
    if not options.schedules:
        command.append("--no-schedules")
    for name, expr in options.crons.items():
        command += ["--cron", f"{name}={expr}"]
    if options.limit:
        command += ["--limit", str(options.limit)]
    return command


def served_names(options: ServeOptions) -> list[str]:
    """The deployments the serve loop registers: ``--only``'s, else every declared one."""
    from winnow.serving.declared import load

    return list(options.only) or [e.name for e in load(options.file).deployments]


def _prefect_home() -> Path:
    return Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser()


def supervise(options: ServeOptions, say: Callable[[str], None] = print) -> int:
    """Run until SIGINT/SIGTERM (exit code 0) or until the serve loop dies (its code)."""
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    server: LocalServer | None = None
    child: subprocess.Popen | None = None
    try:
        api_url = os.environ.get("PREFECT_API_URL")
        if api_url:
            wait_healthy(api_url, 30)
            say(f"Prefect server: {api_url} (from PREFECT_API_URL)  UI: {ui_url(api_url)}")
        else:
            log = _prefect_home() / "winnow-serve-server.log"
            server = LocalServer(options.host, options.port, log=log)
            say(f"Starting a Prefect server on {server.url} (log: {log}) ...")
            server.start(options.server_timeout_s)
            api_url = server.api_url
            say(f"Prefect server: {api_url}  UI: {server.url}")
        check_access(api_url)
        if stop.is_set():
            return 0
        env = auth.client_env({**os.environ, "PREFECT_API_URL": api_url})
        child = subprocess.Popen(
            runner_command(options), env=env, stdin=subprocess.DEVNULL, start_new_session=True
        )
        say("Serving the deployments of " + (options.file or "infra/prefect.yaml") + ".")
        announcer = Announcer(api_url, served_names(options), say)
        while not stop.is_set() and child.poll() is None:
            announcer.poll()  # once they are all registered: which, and where in the UI
            stop.wait(0.5)
        if child.poll() is not None and not stop.is_set():
            say(f"The serve loop exited with code {child.returncode}.")
            return child.returncode or 1
        say("Stopping: the serve loop first, then the server ...")
        return 0
    finally:
        if child is not None:
            _stop_runner(child)
        if server is not None:
            server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_runner(child: subprocess.Popen) -> None:
    """SIGINT to the serve loop alone, then SIGTERM/SIGKILL to anything left in its group
    (flow runs it started). SIGINT, not SIGTERM: ``prefect.serve`` handles the
    KeyboardInterrupt by leaving its runner cleanly, while the runner's own SIGTERM handler
    (3.8.8) calls an async stop from sync code and leaves a never-awaited coroutine."""
    if child.poll() is None:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(SERVE_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
    stop_group(child, 10.0)
