"""`winnow verify` end to end through the Typer app."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from winnow.cli import app

runner = CliRunner()


def _lines(*cases: dict) -> str:
    return "".join(json.dumps(c) + "\n" for c in cases)


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        ("not json\n", "line 1: not valid JSON"),
        (_lines({"id": "a", "solution": "x"}), "missing field(s) tests"),
        (_lines({"id": "a", "solution": "", "tests": ""}) + "[1]\n", "line 2: expected a JSON"),
        (_lines({"id": "a", "solution": 3, "tests": ""}), "line 1: solution"),
        (_lines({"id": "a", "solution": "", "tests": ""}) * 2, "duplicate id 'a'"),
    ],
)
def test_malformed_input_exits_2_before_running(
    stdin: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasks.sandbox.select as select

    def boom(kind: str = "auto"):
        raise AssertionError("no sandbox may be looked up for bad input")

    monkeypatch.setattr(select, "get_sandbox", boom)
    result = runner.invoke(app, ["verify", "--language", "python"], input=stdin)
    assert result.exit_code == 2
    assert message in result.stderr


def test_no_sandbox_exits_3_with_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import tasks.sandbox.select as select
    from tasks.sandbox.base import SandboxUnavailable

    def none(kind: str = "auto"):
        raise SandboxUnavailable(select.NONE_AVAILABLE)

    monkeypatch.setattr(select, "get_sandbox", none)
    stdin = _lines({"id": "a", "solution": "", "tests": ""})
    result = runner.invoke(app, ["verify", "--language", "python"], input=stdin)
    assert result.exit_code == 3
    assert "apt-get install -y bubblewrap" in result.stderr


@pytest.mark.slow
def test_verify_command_python_in_order(bwrap_sandbox) -> None:
    cases = [
        {"id": "p1", "solution": "def sq(x):\n    return x * x", "tests": "assert sq(3) == 9"},
        {"id": 2, "solution": "def sq(x):\n    return x + x", "tests": "assert sq(3) == 9"},
        {"id": "p3", "solution": "def sq(x) return x", "tests": ""},
    ]
    result = runner.invoke(
        app, ["verify", "--language", "python", "--sandbox", "bwrap"], input=_lines(*cases)
    )
    assert result.exit_code == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["id"] for o in out] == ["p1", "2", "p3"]
    assert [o["passed"] for o in out] == [True, False, False]
    assert [o["stage"] for o in out] == ["execute", "execute", "parse"]
    assert out[1]["reason"].startswith("AssertionError")
    assert {"id", "passed", "stage", "reason"} <= set(out[0])


@pytest.mark.slow
def test_verify_command_php(bwrap_sandbox) -> None:
    test = "assert(two() === 2);"
    cases = [
        {"id": "a", "solution": "<?php function two() { return 2; }", "tests": test},
        {"id": "b", "solution": "<?php function two() { return 3; }", "tests": test},
    ]
    result = runner.invoke(
        app, ["verify", "--language", "php", "--sandbox", "bwrap"], input=_lines(*cases)
    )
    assert result.exit_code == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(o["id"], o["passed"]) for o in out] == [("a", True), ("b", False)]


@pytest.mark.slow
def test_sandbox_check_lists_backends(bwrap_sandbox) -> None:
    result = runner.invoke(app, ["sandbox", "check"])
    assert result.exit_code == 0
    assert "bwrap: ok" in result.stdout
    assert "docker:" in result.stdout
