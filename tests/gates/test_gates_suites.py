"""Suite files: loading and up-front checks, all without importing GX."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.core.paths import expectations_dir
from tasks.gates.gx import check_suites
from tasks.gates.suites import (
    SuiteError,
    SuiteSpec,
    known_expectation_types,
    list_suites,
    load_suite,
    parse_suite,
)

ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "name": "demo",
    "severity": "warning",
    "description": "a demo",
    "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}, "id": "x"}
    ],
}


def _write(directory: Path, name: str, content: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content, indent=2))
    return path


def test_shipped_suites_load() -> None:
    names = list_suites()
    assert {"generate.completions", "generate.completions.quality"} <= set(names)
    specs = check_suites(names)
    assert [s.name for s in specs] == names
    critical = load_suite("generate.completions")
    assert critical.severity == "critical"
    assert critical.source == expectations_dir() / "generate.completions.json"
    assert load_suite("generate.completions.quality").severity == "warning"


def test_load_from_another_directory_drops_gx_ids(tmp_path: Path) -> None:
    _write(tmp_path, "demo", GOOD)
    spec = load_suite("demo", tmp_path)
    assert isinstance(spec, SuiteSpec)
    assert spec.expectations[0].to_gx() == {
        "type": "expect_column_values_to_not_be_null",
        "kwargs": {"column": "a"},
    }


def test_env_var_points_at_the_suites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, "demo", GOOD)
    monkeypatch.setenv("WINNOW_EXPECTATIONS_DIR", str(tmp_path))
    assert list_suites() == ["demo"]
    assert load_suite("demo").name == "demo"


def test_missing_suite_lists_what_exists(tmp_path: Path) -> None:
    _write(tmp_path, "demo", GOOD)
    with pytest.raises(SuiteError, match=r"no suite 'nope'.*available: demo"):
        load_suite("nope", tmp_path)
    with pytest.raises(SuiteError, match="bad suite name"):
        load_suite("../etc/passwd", tmp_path)


def test_invalid_json_names_file_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "broken", '{\n  "name": "broken",\n  "severity": "critical",,\n}')
    with pytest.raises(SuiteError) as err:
        load_suite("broken", tmp_path)
    assert f"{path}:3:" in str(err.value) and "not valid JSON" in str(err.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"severity": None}, "severity"),
        ({"severity": "fatal"}, "severity"),
        ({"expectations": []}, "expectations"),
        (
            {"expectations": [{"type": "expect_column_values_to_not_be_nul", "kwargs": {}}]},
            "did you mean 'expect_column_values_to_not_be_null'",
        ),
        ({"expectations": [{"type": "not_an_expectation"}]}, "expectations.0.type"),
        ({"expectations": [{"type": "expect_table_row_count_to_equal", "kwarg": {}}]}, "kwarg"),
        ({"severty": "warning"}, "severty"),
        ({"name": "other"}, "named 'other', expected 'demo'"),
    ],
)
def test_malformed_suites_are_refused_with_the_file_name(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    content = {**GOOD, **change}
    content = {k: v for k, v in content.items() if v is not None}
    path = _write(tmp_path, "demo", content)
    with pytest.raises(SuiteError) as err:
        load_suite("demo", tmp_path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_check_suites_reports_every_problem_at_once(tmp_path: Path) -> None:
    _write(tmp_path, "demo", GOOD)
    _write(tmp_path, "bad", "{")
    with pytest.raises(SuiteError) as err:
        check_suites(["demo", "bad", "missing"], tmp_path)
    text = str(err.value)
    assert "bad.json:1:2" in text and "no suite 'missing'" in text
    assert "demo.json" not in text  # the good suite is not reported
    assert [s.name for s in check_suites(["demo", parse_suite(json.dumps(GOOD))], tmp_path)] == [
        "demo",
        "demo",
    ]


def test_known_types_come_from_gx_without_importing_it() -> None:
    assert "expect_column_values_to_be_unique" in known_expectation_types()
    code = (
        "import sys\n"
        "from tasks.gates.gx import check_suites\n"
        "import tasks.gates.gx\n"
        "check_suites(['generate.completions', 'generate.completions.quality'])\n"
        "assert 'great_expectations' not in sys.modules, 'GX was imported'\n"
        "assert 'pandas' not in sys.modules, 'pandas was imported'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
