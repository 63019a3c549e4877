"""A Prefect server on the loopback interface, started and stopped as a child process.

``winnow serve`` uses it when ``PREFECT_API_URL`` is unset; tests use it to get a real
server with the UI. The server runs in its own process group so that a Ctrl-C in the
terminal reaches only the supervisor, which stops the serve loop before the server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx

from winnow.serving import auth


class ServerError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_healthy(api_url: str, timeout_s: float, process: subprocess.Popen | None = None) -> None:
    """Until ``GET {api_url}/health`` answers, or raise ServerError."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServerError(f"the Prefect server exited with code {process.returncode}")
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.3)
    raise ServerError(f"no healthy Prefect server at {api_url} after {timeout_s:.0f} s {last}")


def check_access(api_url: str) -> None:
    """Raise ServerError when the server refuses this process's credentials (the health
    check is open to all, so a wrong or missing auth string shows only here). Prefect
    Cloud (``PREFECT_API_KEY``) is left to Prefect's own client."""
    if os.environ.get("PREFECT_API_KEY"):
        return
    try:
        response = httpx.get(f"{api_url}/admin/version", headers=auth.headers(), timeout=10)
    except httpx.HTTPError as exc:
        raise ServerError(f"the Prefect server at {api_url} does not answer: {exc}") from exc
    if response.status_code == 401:
        given = "the auth string given was refused" if auth.headers() else "none was given"
        raise ServerError(
            f"the Prefect server at {api_url} requires authentication and {given}: set "
            f"{auth.CLIENT_ENV}='user:password' (the server's auth string)"
        )


def stop_group(process: subprocess.Popen, timeout_s: float) -> int:
    """SIGTERM to the process's group, SIGKILL after ``timeout_s``; its exit code."""
    if process.poll() is None:
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait(10)
    _signal_group(process.pid, signal.SIGKILL)  # anything the leader left behind
    return process.returncode


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class LocalServer:
    """``prefect server start --host HOST --port PORT`` (``port=0``: a free one).

    With an auth string in the environment (:mod:`winnow.serving.auth`) the server asks
    for it on every API call; beyond loopback it refuses to start without one."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, log: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log = log
        self.process: subprocess.Popen | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """The UI's address."""
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def start(self, timeout_s: float = 180.0) -> LocalServer:
        try:
            auth.check_exposure(self.host)
        except auth.AuthRequired as exc:
            raise ServerError(str(exc)) from None
        # A server already on the port would answer the health check in our stead.
        if not port_is_free(self.host, self.port):
            raise ServerError(
                f"port {self.port} on {self.host} is in use: pick another with --port (0: any "
                "free one), or set PREFECT_API_URL to use the server that runs there"
            )
        env = auth.server_env(dict(os.environ))
        env.pop("PREFECT_API_URL", None)
        env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        env.setdefault("DO_NOT_TRACK", "1")
        if auth.is_loopback(self.host) or not env.get("PREFECT_UI_API_URL"):
            env["PREFECT_UI_API_URL"] = self.api_url  # else: the address browsers use
        if self.log is not None:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = self.log.open("ab")
        out = self._log_file or subprocess.DEVNULL
        command = [sys.executable, "-m", "prefect", "server", "start"]
        command += ["--host", self.host, "--port", str(self.port)]
        self.process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_healthy(self.api_url, timeout_s, self.process)
        except ServerError:
            self.stop()
            raise
        return self

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.process is not None:
            stop_group(self.process, timeout_s)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
