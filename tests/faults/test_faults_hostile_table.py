"""`winnow sandbox hostile --backend all`: the hostile suite on every backend, printed as
a case x backend table of contained / ESCAPED. The whole suite runs on both backends in
``tests/sandbox/test_sandbox_hostile.py``; here the command and its table, on two cases (a fork
bomb and a network connect) so the test stays short."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tasks.sandbox import hostile
from tasks.sandbox.base import Sandbox
from winnow.cli import app

pytestmark = pytest.mark.slow

CASES = ["fork bomb", "network connect"]


def table_rows(output: str) -> dict[str, list[str]]:
    """The matrix printed last: its header names the backends, its rows the cases."""
    lines = output.splitlines()
    start = max(i for i, line in enumerate(lines) if line.split()[:1] == ["case"])
    rows = {}
    for line in lines[start:]:
        cells = [c for c in line.split("  ") if c.strip()]
        if cells and not set(line.strip()) <= {"-", " "}:
            rows[cells[0].strip()] = [c.strip() for c in cells[1:]]
    return rows


def test_every_backend_in_one_table(
    bwrap_sandbox: Sandbox,
    docker_sandbox: Sandbox,
    docker_engine: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", docker_engine)
    chosen = [c for c in hostile.HOSTILE_CASES if c.name in CASES]
    assert [c.name for c in chosen] == CASES
    monkeypatch.setattr(hostile, "HOSTILE_CASES", chosen)

    result = CliRunner().invoke(app, ["sandbox", "hostile", "--backend", "all"])

    assert result.exit_code == 0, result.output
    rows = table_rows(result.output)
    assert rows["case"] == ["bwrap", "docker"]
    for case in CASES:
        assert rows[case] == ["contained", "contained"], result.output
    assert rows["contained"] == ["2/2", "2/2"]


def test_a_missing_backend_is_a_column_of_unavailable(
    bwrap_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    chosen = [c for c in hostile.HOSTILE_CASES if c.name == CASES[0]]
    monkeypatch.setattr(hostile, "HOSTILE_CASES", chosen)

    result = CliRunner().invoke(app, ["sandbox", "hostile", "--backend", "all"])

    assert result.exit_code == 1, result.output  # "all" could not cover every backend
    rows = table_rows(result.output)
    assert rows[CASES[0]] == ["contained", "unavailable"]
    assert "docker: unavailable:" in result.output
