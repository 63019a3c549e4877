"""`winnow serve` as a user runs it: it starts its own Prefect server, serves every
declared deployment (schedules included), and stops cleanly on SIGTERM (SIGINT takes
the same path in the supervisor)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from flows.registry import RECIPES
from tasks.core.paths import SOURCE_ROOT
from winnow.serving.declared import load
from winnow.serving.runner import parse_crons

RARE_CRON = "17 4 13 * *"


def scheduled_runs(served, deployment_id: str) -> list[dict]:
    body = {
        "deployments": {"id": {"any_": [deployment_id]}},
        "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
    }
    return served.api("POST", "/flow_runs/filter", json=body).json()


@pytest.mark.slow
def test_serve_registers_every_recipe_and_stops_cleanly(winnow_serve) -> None:
    """SIGTERM here; SIGINT (Ctrl-C) takes the same path in the supervisor."""
    import time

    # Schedules that cannot fire while the test runs: the declared ones paused, and an
    # extra one on the 13th at 04:17 (a run that fired would use the embedded model).
    served = winnow_serve("--no-schedules", "--cron", f"code-sft={RARE_CRON}")
    served.wait_url(240)
    deployments = served.wait_deployments(set(RECIPES), 240)
    by_name = {d["name"]: d for d in deployments}
    declared = load()

    # it says where the UI is and which deployments it registered, with a link to each
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "Registered" not in served.output():
        time.sleep(0.5)
    said = served.output()
    assert f"UI: {served.ui_url}" in said
    assert f"Registered {len(RECIPES)} deployment(s) (UI: {served.ui_url}/deployments):" in said
    for name in RECIPES:
        link = f"{served.ui_url}/deployments/deployment/{by_name[name]['id']}"
        assert f"{name}/{name}  {link}  (prefect deployment run '{name}/{name}')" in said
    assert "not registered yet" not in said

    # every deployment: its declared default parameters, and a form schema of its model
    for name, recipe in RECIPES.items():
        d = by_name[name]
        assert d["parameters"] == declared.get(name).parameters
        definitions = d["parameter_openapi_schema"]["definitions"]
        assert recipe.params_model().__name__ in definitions

    # the declared nightly schedule is registered (paused by --no-schedules); the one
    # added with --cron is active and gets scheduled runs
    nightly = declared.get("rag-qa").schedules[0].cron
    schedules = {
        name: [(s["schedule"]["cron"], s["active"]) for s in d["schedules"]]
        for name, d in by_name.items()
    }
    expected = {name: [] for name in RECIPES}  # no schedule unless declared or added
    expected.update({"rag-qa": [(nightly, False)], "code-sft": [(RARE_CRON, True)]})
    assert schedules == expected
    deadline, runs = time.monotonic() + 120, []
    while time.monotonic() < deadline and not runs:
        runs = scheduled_runs(served, by_name["code-sft"]["id"])
        time.sleep(1)
    assert runs, "the cron schedule created no scheduled run"
    assert not scheduled_runs(served, by_name["rag-qa"]["id"])

    code, left = served.stop(signal.SIGTERM)
    assert code == 0, served.output()
    assert not left, f"processes left alive after SIGTERM: {left}"
    assert "then the server" in served.output()


def serve_cli(home, *args: str) -> subprocess.CompletedProcess:
    """`winnow serve ARGS` with a bare environment (no PREFECT_API_URL)."""
    return subprocess.run(
        [sys.executable, "-m", "winnow.cli", "serve", *args],
        cwd=str(SOURCE_ROOT),
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PREFECT_HOME": str(home), "HOME": str(home)},
    )


def test_unknown_names_fail_before_any_server_starts(tmp_path) -> None:
    result = serve_cli(tmp_path, "--only", "nope")
    assert result.returncode == 2
    assert "no deployment 'nope'" in result.stderr
    assert "Starting a Prefect server" not in result.stderr + result.stdout


def test_cron_option_needs_a_name() -> None:
    assert parse_crons(["rag-qa=0 * * * *"]) == {"rag-qa": "0 * * * *"}
    with pytest.raises(ValueError, match="NAME=EXPRESSION"):
        parse_crons(["0 * * * *"])


def test_a_busy_port_is_refused_before_starting(tmp_path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = serve_cli(tmp_path, "--port", str(port))
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr


def test_the_ui_address_follows_the_api_or_prefect_ui_url(monkeypatch) -> None:
    from winnow.serving.announce import describe, ui_url

    monkeypatch.delenv("PREFECT_UI_URL", raising=False)
    assert ui_url("http://prefect.internal:4200/api") == "http://prefect.internal:4200"
    monkeypatch.setenv("PREFECT_UI_URL", "https://prefect.example.com/")
    assert ui_url("http://10.0.0.5:4200/api") == "https://prefect.example.com"
    said = describe(
        [{"name": "rag-qa", "flow": "rag-qa", "id": "d1"}], ["rag-qa", "code-sft"], "http://u"
    )
    assert said.splitlines() == [
        "Registered 1 deployment(s) (UI: http://u/deployments):",
        "  rag-qa/rag-qa  http://u/deployments/deployment/d1"
        "  (prefect deployment run 'rag-qa/rag-qa')",
        "  not registered yet: code-sft",
    ]
