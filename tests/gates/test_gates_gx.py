"""Quality gates with real Great Expectations validations (GX loads once per module)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from tasks.gates import gx as gates
from tasks.gates.gx import GateFailed, GateResult, check_suites, enforce, gate, validate
from tasks.gates.suites import SuiteError, parse_suite
from tasks.store.catalog import Catalog
from tasks.store.shards import read_frame, write_shard


@pytest.fixture(scope="module", autouse=True)
def gx_loaded() -> None:
    """Import GX and build the context once for every test here (~3-8 s)."""
    gates._gx()


def _suite(severity: str, *expectations: dict) -> str:
    return json.dumps(
        {"name": f"t.{severity}", "severity": severity, "expectations": list(expectations)}
    )


NOT_NULL = {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "completion"}}
UNIQUE = {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "record_id"}}
ROWS = {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}}

PROV = {"run_id": "r", "stage": "generate", "model": "qwen", "params": {"temperature": 0.7}}
GOOD_ROWS = [  # the shape tasks.pipeline.llm_stage.generate_batch keeps
    {"_index": 0, "topic": "sorting", "completion": "def f(): ...", "provenance": PROV},
    {"_index": 2, "topic": "graphs", "completion": "x = 1", "provenance": {**PROV, "round": 1}},
]


def test_shipped_suite_passes_good_output_read_from_shards(tmp_path: Path) -> None:
    shard = write_shard(GOOD_ROWS, tmp_path / "s.parquet")
    frame = read_frame([shard.path])
    result = gate(frame, "generate.completions")
    assert result.success and result.n_failed == 0 and result.failures == []
    assert result.n_expectations == 4 and result.n_rows == 2
    assert gate(frame, "generate.completions.quality").success
    assert result.suite == "generate.completions" and result.severity == "critical"
    assert 0 < result.duration_s < 5


def test_failing_critical_suite_raises_with_the_details() -> None:
    frame = pd.DataFrame(
        {"_index": [0, 0, 1], "provenance": [PROV] * 3, "completion": ["x", None, "y"]}
    )
    result = validate(frame, "generate.completions")
    assert not result.success
    failed = {f["expectation"]: f for f in result.failures}
    assert set(failed) == {
        "expect_column_values_to_be_unique",
        "expect_column_values_to_not_be_null",
    }
    assert failed["expect_column_values_to_not_be_null"]["kwargs"] == {"column": "completion"}
    assert failed["expect_column_values_to_be_unique"]["observed"]["unexpected_count"] == 2
    assert failed["expect_column_values_to_be_unique"]["observed"]["partial_unexpected"] == [0, 0]
    json.dumps(result.model_dump())  # storable as is (no NaN, no numpy)
    with pytest.raises(GateFailed) as err:
        enforce(result)
    assert err.value.result is result
    assert "generate.completions (critical) FAILED: 2/4" in str(err.value)


def test_failing_warning_suite_logs_and_returns(caplog: pytest.LogCaptureFixture) -> None:
    spec = parse_suite(_suite("warning", NOT_NULL))
    frame = pd.DataFrame({"completion": ["ok", None]})
    with caplog.at_level(logging.WARNING, logger="tasks.gates.gx"):
        result = gate(frame, spec)
    assert not result.success and result.n_failed == 1
    assert "t.warning (warning) FAILED" in caplog.text
    blank = pd.DataFrame({"completion": ["", "  ", "I'm sorry, I can't", "ok"]})
    quality = enforce(validate(blank, "generate.completions.quality"))  # warns, no raise
    assert {f["expectation"] for f in quality.failures} == {
        "expect_column_value_lengths_to_be_between",
        "expect_column_values_to_not_match_regex",
    }
    assert quality.n_failed == 3  # empty, blank, and 25% refusals (over the 5% allowed)


def test_empty_frames_validate_as_documented() -> None:
    spec = parse_suite(_suite("critical", NOT_NULL, ROWS))
    empty_with_columns = pd.DataFrame({"completion": pd.Series([], dtype=object)})
    result = validate(empty_with_columns, spec)
    # Value checks hold vacuously; the row-count check is what catches "nothing kept".
    assert [f["expectation"] for f in result.failures] == ["expect_table_row_count_to_be_between"]
    no_columns = validate(pd.DataFrame(), parse_suite(_suite("critical", NOT_NULL)))
    assert not no_columns.success and no_columns.columns == []
    assert "columns: (none)" in no_columns.summary()
    assert 'column "completion"' in no_columns.failures[0]["exception"]
    assert "does not exist" in no_columns.failures[0]["exception"]


def test_missing_column_fails_clearly_on_a_full_frame() -> None:
    result = validate(pd.DataFrame({"other": [1, 2]}), parse_suite(_suite("critical", NOT_NULL)))
    assert result.n_failed == 1 and "does not exist" in result.failures[0]["exception"]


def test_same_suite_name_with_new_content_is_not_stale() -> None:
    frame = pd.DataFrame({"record_id": ["a", "a"], "completion": ["x", "y"]})
    assert validate(frame, parse_suite(_suite("warning", NOT_NULL))).success
    assert not validate(frame, parse_suite(_suite("warning", NOT_NULL, UNIQUE))).success


def test_deep_check_catches_bad_kwargs_before_a_run(tmp_path: Path) -> None:
    bad = {
        "type": "expect_column_values_to_be_between",
        "kwargs": {"column": "n", "min_value": "low"},
    }
    path = tmp_path / "t.bad.json"
    path.write_text(json.dumps({"name": "t.bad", "severity": "critical", "expectations": [bad]}))
    assert check_suites(["t.bad"], tmp_path)  # the cheap check can't know
    with pytest.raises(SuiteError, match=r"(?s)t\.bad\.json: expectation 0 .*min_value"):
        check_suites(["t.bad"], tmp_path, deep=True)
    assert check_suites(["generate.completions"], deep=True)[0].name == "generate.completions"
    # GX ships this module but doesn't register it; its own suite class would just drop it.
    unregistered = {
        "type": "expect_multicolumn_values_to_be_unique",
        "kwargs": {"column_list": ["a", "b"]},
    }
    spec = parse_suite(_suite("critical", NOT_NULL, unregistered))
    with pytest.raises(SuiteError, match="expectation 1"):
        check_suites([spec], deep=True)
    with pytest.raises(SuiteError):  # and a gate that can't run all its checks doesn't run
        validate(pd.DataFrame({"completion": ["x"]}), spec)


def test_results_go_to_the_catalog() -> None:
    catalog = Catalog()
    catalog.start_run("r1", "generate")
    result = validate(
        pd.DataFrame({"completion": [None]}), parse_suite(_suite("warning", NOT_NULL))
    )
    catalog.add_validation("r1", "generate", result)
    [stored] = catalog.validations("r1")
    assert stored["suite"] == "t.warning" and stored["success"] is False
    assert stored["details"][0]["expectation"] == "expect_column_values_to_not_be_null"
    assert GateResult.model_validate({**stored, "failures": stored["details"]}).n_failed == 1


def test_no_progress_bars(capfd: pytest.CaptureFixture[str]) -> None:
    validate(pd.DataFrame({"completion": ["x"]}), parse_suite(_suite("warning", NOT_NULL)))
    out, err = capfd.readouterr()
    assert "Calculating Metrics" not in out + err
