"""A Prefect server that listens beyond loopback lets no one in without the auth string.

Attacked as someone on the same network would: a real ``winnow serve --host 0.0.0.0``
with ``PREFECT_API_AUTH_STRING`` starts a real Prefect server that asks for it; without
it, the UI's API, deployments, flow-run creation and block documents (Secret blocks hold
API keys) answer 401; with it, they answer, the serve loop registered its deployments
(it was given the string) and a Secret block's value is readable: whoever holds the auth
string can read the keys kept in Prefect (README: For teams). Without the string, the
same command refuses to start a server at all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import httpx
import pytest

from tasks.core.paths import SOURCE_ROOT
from winnow.serving import auth
from winnow.serving.server import free_port, port_is_free


def without_auth_env() -> dict[str, str]:
    drop = {auth.CLIENT_ENV, auth.SERVER_ENV, "PREFECT_API_URL"}
    return {k: v for k, v in os.environ.items() if k not in drop}


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "winnow.example.org"])
def test_beyond_loopback_needs_an_auth_string(host) -> None:
    with pytest.raises(auth.AuthRequired, match="PREFECT_API_AUTH_STRING"):
        auth.check_exposure(host, env={})
    auth.check_exposure(host, env={auth.CLIENT_ENV: "team:pw"})
    auth.check_exposure(host, env={auth.SERVER_ENV: "team:pw"})


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_needs_none(host) -> None:
    auth.check_exposure(host, env={})


def test_one_auth_string_for_server_and_clients() -> None:
    assert auth.server_env({auth.CLIENT_ENV: "a:b"})[auth.SERVER_ENV] == "a:b"
    assert auth.client_env({auth.SERVER_ENV: "a:b"})[auth.CLIENT_ENV] == "a:b"
    assert auth.headers({auth.CLIENT_ENV: "a:b"}) == {"Authorization": "Basic YTpi"}
    assert auth.headers({}) == {} and auth.server_env({}) == {}


def test_serve_refuses_a_network_address_without_an_auth_string(tmp_path) -> None:
    port = free_port()
    env = {**without_auth_env(), "PREFECT_HOME": str(tmp_path / "home")}
    command = [sys.executable, "-m", "winnow.cli", "serve", "--host", "0.0.0.0"]
    result = subprocess.run(
        [*command, "--port", str(port)],
        env=env,
        cwd=str(SOURCE_ROOT),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "without authentication" in result.stderr and auth.CLIENT_ENV in result.stderr
    assert port_is_free("0.0.0.0", port)  # nothing was started
    assert not (tmp_path / "home" / "winnow-serve-server.log").exists()


LATER = {
    "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": "2099-01-01T00:00:00Z"}}
}
HISTORY = {
    "history_start": "2026-01-01T00:00:00Z",
    "history_end": "2026-01-02T00:00:00Z",
    "history_interval_seconds": 3600,
}


def as_attacker(api_url: str, headers: dict[str, str] | None = None) -> dict[str, int]:
    """The status of each request an intruder would make first."""
    deployment = str(uuid.uuid4())
    block = str(uuid.uuid4())
    later = {
        "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": "2099-01-01T00:00:00Z"}}
    }
    calls = {
        "ui flow runs": ("POST", "/ui/flow_runs/history", HISTORY),
        "ui settings of the api": ("GET", "/admin/settings", None),
        "deployments": ("POST", "/deployments/filter", {}),
        "create flow run": ("POST", f"/deployments/{deployment}/create_flow_run", later),
        "new flow run": ("POST", "/flow_runs/", {"flow_id": deployment}),
        "block documents": ("POST", "/block_documents/filter", {"include_secrets": True}),
        "one block with secrets": ("GET", f"/block_documents/{block}?include_secrets=true", None),
        "logs": ("POST", "/logs/filter", {}),
        "artifacts": ("POST", "/artifacts/filter", {}),
    }  # fmt: skip
    status = {}
    for name, (method, path, body) in calls.items():
        response = httpx.request(
            method, f"{api_url}{path}", json=body, headers=headers or {}, timeout=30
        )
        status[name] = response.status_code
    return status


@pytest.mark.slow
def test_a_served_network_server_asks_everyone_for_the_auth_string(winnow_serve) -> None:
    secret = f"winnow:{uuid.uuid4().hex}"
    served = winnow_serve(
        "--host", "0.0.0.0", "--only", "rag-qa", "--no-schedules",
        env={auth.CLIENT_ENV: secret},
    )  # fmt: skip
    api_url = served.wait_url(240)
    assert api_url.startswith("http://0.0.0.0:")
    api_url = api_url.replace("0.0.0.0", "127.0.0.1")
    served.api_url = api_url
    # the serve loop got the string: its deployment is registered
    (deployment,) = served.wait_deployments({"rag-qa"}, 240)

    refused = as_attacker(api_url)
    assert set(refused.values()) == {401}, refused
    wrong = as_attacker(api_url, auth.headers({auth.CLIENT_ENV: "winnow:guess"}))
    assert set(wrong.values()) == {401}, wrong
    # probes stay open (the compose healthcheck uses this one)
    assert httpx.get(f"{api_url}/health", timeout=10).status_code == 200
    settings = httpx.get(served.ui_url.replace("0.0.0.0", "127.0.0.1") + "/ui-settings")
    assert settings.json()["auth"] == "BASIC"  # the UI shows its login page

    allowed = as_attacker(api_url, served.headers)
    assert all(code != 401 for code in allowed.values()), allowed
    assert allowed["deployments"] == 200 and allowed["block documents"] == 200

    # A Secret block's value: 401 without the string, the value itself with it.
    key = f"sk-winnow-{uuid.uuid4().hex}"
    block_id = create_secret_block(served, key)
    path = f"/block_documents/{block_id}?include_secrets=true"
    assert httpx.get(f"{api_url}{path}", timeout=30).status_code == 401
    assert served.api("GET", path).json()["data"]["value"] == key
    hidden = served.api("GET", f"/block_documents/{block_id}").json()["data"]["value"]
    assert key not in str(hidden)

    # a run started with the string is accepted (scheduled far away: it never runs here)
    run = served.api("POST", f"/deployments/{deployment['id']}/create_flow_run", json=LATER)
    served.api("DELETE", f"/flow_runs/{run.json()['id']}")

    # a second `winnow serve` pointed at it without the string is told why it cannot
    refused_serve = subprocess.run(
        [sys.executable, "-m", "winnow.cli", "serve", "--only", "rag-qa", "--no-schedules"],
        env={**without_auth_env(), "PREFECT_API_URL": api_url},
        cwd=str(SOURCE_ROOT),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused_serve.returncode != 0
    assert "requires authentication" in refused_serve.stderr, refused_serve.stderr

    code, left = served.stop(signal.SIGTERM)
    assert code == 0, served.output()
    assert not left


def create_secret_block(served, value: str) -> str:
    """A Secret block document made through the API, as `Secret(value=...).save()` does."""
    secret_type = {"block_types": {"slug": {"any_": ["secret"]}}}
    types = served.api("POST", "/block_types/filter", json=secret_type).json()
    if not types:
        pytest.fail("no Secret block type registered on the server")
    (block_type,) = types
    schemas = served.api(
        "POST", "/block_schemas/filter",
        json={"block_schemas": {"block_type_id": {"any_": [block_type["id"]]}}},
    ).json()  # fmt: skip
    body = {
        "name": f"llm-key-{uuid.uuid4().hex[:8]}",
        "data": {"value": value},
        "block_type_id": block_type["id"],
        "block_schema_id": schemas[0]["id"],
    }
    return served.api("POST", "/block_documents/", json=body).json()["id"]
