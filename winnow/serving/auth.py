"""Basic auth for the Prefect servers Winnow starts, and for its own calls to them.

A Prefect server's API lets whoever reaches it start runs (spending the team's API
budget), read every run's examples and logs, change deployments and read Secret blocks.
On 127.0.0.1 only this machine's users reach it; on any other address it must ask for
the auth string (``PREFECT_SERVER_API_AUTH_STRING``, "user:password"), and clients send
it (``PREFECT_API_AUTH_STRING``). One value serves both: whichever of the two is set is
given to the server Winnow starts and to the processes that talk to it.
"""

from __future__ import annotations

import base64
import ipaddress
import os

SERVER_ENV = "PREFECT_SERVER_API_AUTH_STRING"
CLIENT_ENV = "PREFECT_API_AUTH_STRING"


class AuthRequired(ValueError):
    """A server would listen beyond loopback without an auth string."""


def auth_string(env: dict[str, str] | None = None) -> str | None:
    """The auth string from the environment: the client's, else the server's."""
    source = os.environ if env is None else env
    return source.get(CLIENT_ENV) or source.get(SERVER_ENV) or None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def check_exposure(host: str, env: dict[str, str] | None = None) -> None:
    """Raise :class:`AuthRequired` when a server on ``host`` would have no auth string."""
    if is_loopback(host) or auth_string(env):
        return
    raise AuthRequired(
        f"refusing to serve the Prefect API on {host} without authentication: anyone who "
        f"reaches it could start runs, read every dataset and read Secret blocks. Set "
        f"{CLIENT_ENV}='user:long-random-password' (browsers log in with it), or keep "
        "--host 127.0.0.1"
    )


def server_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` for a server process: the auth string set for the server too."""
    value = auth_string(env)
    return {**env, SERVER_ENV: value} if value else env


def client_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` for a client process: the auth string set for the client too."""
    value = auth_string(env)
    return {**env, CLIENT_ENV: value} if value else env


def headers(env: dict[str, str] | None = None) -> dict[str, str]:
    """The Authorization header Winnow's own API calls send, if an auth string is set."""
    value = auth_string(env)
    if not value:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(value.encode()).decode()}
