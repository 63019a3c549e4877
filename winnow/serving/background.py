"""The Prefect server that ``winnow run`` and ``winnow generate`` share.

Without ``PREFECT_API_URL``, Prefect starts a temporary server for every run and stops it
after: 5-10 s before the first request and seconds after the last answer, every time.
Instead, the first command starts one server in the background, owned by this user and
``PREFECT_HOME`` (its database, so every run stays in the UI): later commands find it
through ``<PREFECT_HOME>/winnow-server.json`` and only talk to it. It is never one per
run: ``winnow server status`` shows it, ``winnow server stop`` stops it.

``PREFECT_API_URL`` always wins (a team's server, the Prefect Cloud), and
``WINNOW_PREFECT_SERVER=per-run`` keeps Prefect's own temporary server per run. With
``PREFECT_API_AUTH_STRING`` set, the background server is started asking for it and the
run sends it (a team's server gets it from Prefect's own client).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from pydantic import BaseModel

from tasks.core.janitor import ensure_janitor, unmarked_env
from tasks.core.processes import pid_exists
from winnow.serving import auth
from winnow.serving.server import ServerError, free_port, wait_healthy

MODE_ENV = "WINNOW_PREFECT_SERVER"
START_TIMEOUT_S = 120.0


class ServerState(BaseModel):
    pid: int
    url: str  # the UI; the API is url + "/api"
    started_at: float
    log: str

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"


def prefect_home() -> Path:
    return Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()


def state_file() -> Path:
    return prefect_home() / "winnow-server.json"


def read_state() -> ServerState | None:
    try:
        return ServerState.model_validate_json(state_file().read_text())
    except (OSError, ValueError):
        return None


def healthy(state: ServerState, timeout_s: float = 2.0) -> bool:
    if not pid_exists(state.pid):
        return False
    try:
        return httpx.get(f"{state.api_url}/health", timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def running() -> ServerState | None:
    """The background server if it runs and answers."""
    state = read_state()
    return state if state is not None and healthy(state) else None


def start(timeout_s: float = START_TIMEOUT_S) -> ServerState:
    """The running background server, started if none answers (one at a time: a lock
    keeps two commands started together from starting two)."""
    home = prefect_home()
    home.mkdir(parents=True, exist_ok=True)
    with (home / "winnow-server.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = running()
        if state is not None:
            return state
        port = free_port()
        log = home / "winnow-server.log"
        # unmarked: the run's janitor must not stop the server every command shares
        env = {k: v for k, v in unmarked_env().items() if k != "PREFECT_API_URL"}
        env = auth.server_env(env)  # PREFECT_API_AUTH_STRING set: the server asks for it
        env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
        env["PREFECT_UI_API_URL"] = f"http://127.0.0.1:{port}/api"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "prefect", "server", "start"]
                + ["--host", "127.0.0.1", "--port", str(port)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # not the command's: it outlives it on purpose
            )
        state = ServerState(
            pid=process.pid, url=f"http://127.0.0.1:{port}", started_at=time.time(), log=str(log)
        )
        try:
            wait_healthy(state.api_url, timeout_s, process)
        except ServerError:
            _stop_pid(process.pid)
            raise
        state_file().write_text(state.model_dump_json())
        return state


def stop(timeout_s: float = 20.0) -> ServerState | None:
    """Stop the background server (and its process group); what was stopped."""
    state = read_state()
    if state is None:
        return None
    _stop_pid(state.pid, timeout_s)
    state_file().unlink(missing_ok=True)
    return state


def _stop_pid(pid: int, timeout_s: float = 20.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and pid_exists(pid):
            time.sleep(0.1)
            try:
                os.waitpid(pid, os.WNOHANG)  # our own child: reap it
            except ChildProcessError:
                pass
        if not pid_exists(pid):
            return


def use_background_server() -> str | None:
    """Point this process at the background server (started if need be), unless
    ``PREFECT_API_URL`` names one already or the per-run mode is asked for. Call it
    before Prefect runs a flow; returns the API URL used, if any."""
    if os.environ.get("PREFECT_API_URL") or os.environ.get(MODE_ENV) == "per-run":
        return None
    if "prefect.settings" in sys.modules:  # e.g. a test harness set it in-process
        from prefect.settings import PREFECT_API_URL

        if PREFECT_API_URL.value():
            return None
    api_url = start().api_url
    os.environ["PREFECT_API_URL"] = api_url
    if value := auth.auth_string():  # the server was started with it: the client sends it
        os.environ[auth.CLIENT_ENV] = value
    return api_url


def prepare_run() -> None:
    """What a command does before it runs a flow: the gate worker starts (GX loads in its
    own process while the run starts) and Prefect's API is the shared server."""
    from tasks.gates.worker import worker

    ensure_janitor()  # first: whatever the run starts (a temporary server too) goes with it
    worker().start()
    try:
        use_background_server()
    except ServerError as exc:  # Prefect's own temporary server will do, slower
        print(f"warning: no background Prefect server ({exc}); using a temporary one",
              file=sys.stderr)  # fmt: skip


def describe(state: ServerState | None) -> dict[str, object]:
    if state is None:
        return {"running": False, "state_file": str(state_file())}
    return {
        "running": healthy(state),
        "pid": state.pid,
        "url": state.url,
        "api_url": state.api_url,
        "up_s": round(time.time() - state.started_at),
        "log": state.log,
        "state_file": str(state_file()),
    }


def main() -> None:  # pragma: no cover - a debugging aid
    print(json.dumps(describe(read_state()), indent=2))
