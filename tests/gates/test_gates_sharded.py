"""A suite over a stage's shards gives the verdict of the whole-frame validation, while
row-wise expectations only ever see one chunk of rows and the whole-dataset ones only
their own columns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tasks.gates import gx, sharded
from tasks.gates.suites import ExpectationSpec, SuiteSpec
from tasks.pipeline.stage import ShardRef
from tasks.store.shards import write_shard


def expect(type_: str, **kwargs: Any) -> ExpectationSpec:
    return ExpectationSpec(type=f"expect_{type_}", kwargs=kwargs)


SUITE = SuiteSpec(
    name="sharded.test",
    severity="critical",
    expectations=[
        expect("column_values_to_not_be_null", column="text"),
        expect("column_values_to_be_between", column="n", min_value=0, max_value=100),
        expect("column_values_to_be_unique", column="n"),
        expect("table_row_count_to_be_between", min_value=1),
    ],
)


def rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"id": f"r{i}", "n": i, "text": f"row {i}", "provenance": {"big": "x" * 50}}
        for i in range(start, start + n)
    ]


def shards_of(tmp_path: Path, batches: list[list[dict[str, Any]]]) -> list[ShardRef]:
    refs = []
    for i, batch in enumerate(batches):
        path = str(tmp_path / f"{i}.parquet")
        info = write_shard(batch, path)
        refs.append(ShardRef(path=path, rows=len(batch), fingerprint=info.fingerprint))
    return refs


def whole(batches: list[list[dict[str, Any]]]) -> gx.GateResult:
    return gx.validate(pd.DataFrame([r for b in batches for r in b]), SUITE)


def failed(result: gx.GateResult) -> set[str]:
    return {f["expectation"] for f in result.failures}


def test_split_sends_row_wise_checks_to_chunks_and_the_rest_to_one_pass() -> None:
    with_mostly = expect("column_values_to_not_be_null", column="text", mostly=0.9)
    spec = SUITE.model_copy(update={"expectations": [*SUITE.expectations, with_mostly]})
    row_part, whole_part = sharded.split(spec)
    assert row_part is not None and whole_part is not None
    assert [e.type for e in row_part.expectations] == [
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_between",
    ]
    # uniqueness and row counts look across rows; `mostly` is a share of all rows
    assert [e.type for e in whole_part.expectations] == [
        "expect_column_values_to_be_unique",
        "expect_table_row_count_to_be_between",
        "expect_column_values_to_not_be_null",
    ]
    assert sharded.columns_of(whole_part) == ["id", "n", "text"]


def test_a_clean_stage_passes_like_the_whole_frame(tmp_path: Path) -> None:
    batches = [rows(3, 0), rows(3, 3), rows(3, 6), rows(2, 9)]
    result = sharded.validate_shards(shards_of(tmp_path, batches), SUITE, size=4)
    assert result.success and whole(batches).success
    assert (result.n_rows, result.n_expectations, result.n_failed) == (11, 4, 0)


def test_failures_in_several_chunks_are_counted_once_with_summed_counts(
    tmp_path: Path,
) -> None:
    batches = [rows(3, 0), rows(3, 3), rows(3, 6)]
    batches[0][1]["text"] = None
    batches[2][0]["text"] = None
    batches[2][2]["n"] = 500
    refs = shards_of(tmp_path, batches)
    result = sharded.validate_shards(refs, SUITE, size=3)  # one shard per chunk
    assert not result.success
    assert (
        failed(result)
        == failed(whole(batches))
        == {
            "expect_column_values_to_not_be_null",
            "expect_column_values_to_be_between",
        }
    )
    assert result.n_failed == 2
    nulls = next(f for f in result.failures if f["expectation"].endswith("not_be_null"))
    assert nulls["observed"]["unexpected_count"] == 2
    assert nulls["observed"]["element_count"] == 9
    between = next(f for f in result.failures if f["expectation"].endswith("be_between"))
    assert between["observed"]["partial_unexpected"] == [500]


def test_a_duplicate_across_chunks_is_caught(tmp_path: Path) -> None:
    batches = [rows(3, 0), rows(3, 3)]
    batches[1][2]["n"] = 0  # the same n as the first shard's first row
    result = sharded.validate_shards(shards_of(tmp_path, batches), SUITE, size=3)
    assert failed(result) == failed(whole(batches)) == {"expect_column_values_to_be_unique"}


def test_chunks_read_only_the_columns_their_checks_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, list[str]]] = []
    real = gx.validate

    def spy(frame: pd.DataFrame, spec: SuiteSpec) -> gx.GateResult:
        seen.append((len(frame), sorted(frame.columns)))
        return real(frame, spec)

    monkeypatch.setattr(gx, "validate", spy)
    refs = shards_of(tmp_path, [rows(4, 0), rows(4, 4), rows(4, 8)])
    assert sharded.validate_shards(refs, SUITE, size=5).success
    # two chunks of row-wise checks (4+4 rows, then 4), then one pass over `n` and `id`
    assert seen == [
        (8, ["id", "n", "text"]),
        (4, ["id", "n", "text"]),
        (12, ["id", "n"]),
    ]


def test_an_empty_stage_fails_only_its_row_count(tmp_path: Path) -> None:
    result = sharded.validate_shards(shards_of(tmp_path, [[], []]), SUITE, size=3)
    assert failed(result) == {"expect_table_row_count_to_be_between"}


def test_a_column_the_shards_lack_fails_its_expectation(tmp_path: Path) -> None:
    batches = [[{k: v for k, v in r.items() if k != "text"} for r in rows(3)]]
    result = sharded.validate_shards(shards_of(tmp_path, batches), SUITE, size=3)
    assert failed(result) == {"expect_column_values_to_not_be_null"}
    assert "does not exist" in (result.failures[0]["exception"] or "")


def test_an_empty_stage_passes_value_checks_on_columns_the_suite_names(tmp_path: Path) -> None:
    """No rows, so no columns: the columns the suite names (``id`` included) are given to
    it empty, and only row counts speak about emptiness."""
    spec = SUITE.model_copy(
        update={
            "expectations": [
                expect("column_values_to_be_unique", column="id"),
                expect("column_values_to_not_be_null", column="text"),
            ]
        }
    )
    result = sharded.validate_shards(shards_of(tmp_path, [[]]), spec, size=3)
    assert result.success, result.summary()
