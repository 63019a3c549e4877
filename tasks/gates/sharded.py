"""A suite run over a stage's shards with memory that does not grow with the stage.

Reading a whole stage's kept rows into one frame made a gate the largest thing a run held
(the rows' text and provenance, as Python objects, for every row). So a suite is split:

- **Row-wise expectations** (each row passes or fails on its own: not null, in a set,
  within bounds, matching a pattern...) run on chunks of about ``chunk_rows`` rows, shard
  after shard, each chunk reading only the columns those expectations name. A chunk's
  frame is dropped before the next is read.
- **Whole-dataset expectations** (uniqueness, row counts, distributions, and any
  row-wise one with ``mostly`` below 1, whose verdict is a share of all rows) run once,
  on a frame holding only their own columns: an id or a label column, not the text.

The verdicts are merged into one ``GateResult`` for the whole suite: a row-wise
expectation fails if it fails on any chunk, with the unexpected rows counted over all
chunks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd

from tasks.gates import gx
from tasks.gates.suites import ExpectationSpec, SuiteSpec
from tasks.store.shards import ShardRef, read_frame

CHUNK_ROWS = 10_000  # default; WINNOW_GATE_CHUNK_ROWS overrides

# Expectations whose verdict on a row depends on that row alone. (Not the type checks:
# on a typed pandas column GX checks the dtype, which a chunk may infer differently from
# the whole column, e.g. a chunk where every value is missing.)
ROW_WISE = frozenset(
    {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_null",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_in_set",
        "expect_column_values_to_be_between",
        "expect_column_value_lengths_to_be_between",
        "expect_column_value_lengths_to_equal",
        "expect_column_values_to_match_regex",
        "expect_column_values_to_not_match_regex",
        "expect_column_values_to_match_regex_list",
        "expect_column_values_to_not_match_regex_list",
        "expect_column_values_to_match_like_pattern",
        "expect_column_values_to_not_match_like_pattern",
        "expect_column_values_to_be_json_parseable",
        "expect_column_values_to_match_json_schema",
        "expect_column_values_to_be_dateutil_parseable",
        "expect_column_values_to_match_strftime_format",
        "expect_column_pair_values_a_to_be_greater_than_b",
        "expect_column_pair_values_to_be_equal",
        "expect_multicolumn_sum_to_equal",
        "expect_select_column_values_to_be_unique_within_record",
    }
)


def chunk_rows() -> int:
    try:
        return max(1, int(os.environ.get("WINNOW_GATE_CHUNK_ROWS", CHUNK_ROWS)))
    except ValueError:
        return CHUNK_ROWS


def is_row_wise(expectation: ExpectationSpec) -> bool:
    mostly = expectation.kwargs.get("mostly", 1.0)
    return expectation.type in ROW_WISE and (mostly is None or float(mostly) >= 1.0)


def split(spec: SuiteSpec) -> tuple[SuiteSpec | None, SuiteSpec | None]:
    """The suite's row-wise part and its whole-dataset part (either may be None)."""
    rows = [e for e in spec.expectations if is_row_wise(e)]
    whole = [e for e in spec.expectations if not is_row_wise(e)]

    def part(expectations: list[ExpectationSpec]) -> SuiteSpec | None:
        return spec.model_copy(update={"expectations": expectations}) if expectations else None

    return part(rows), part(whole)


def named_columns(spec: SuiteSpec) -> list[str]:
    """The columns a suite's expectations name."""
    named: set[str] = set()
    for e in spec.expectations:
        for key in ("column", "column_A", "column_B"):
            if isinstance(e.kwargs.get(key), str):
                named.add(e.kwargs[key])
        named.update(e.kwargs.get("column_list") or [])
    return sorted(named)


def columns_of(spec: SuiteSpec) -> list[str]:
    """The columns read for a suite: those it names, plus ``id`` (a failure names rows
    by it)."""
    return sorted({*named_columns(spec), "id"})


def chunks(shards: Sequence[ShardRef], size: int) -> Iterator[list[ShardRef]]:
    """Consecutive shards grouped until a group holds at least ``size`` rows."""
    group: list[ShardRef] = []
    held = 0
    for shard in shards:
        group.append(shard)
        held += shard.rows
        if held >= size:
            yield group
            group, held = [], 0
    if group:
        yield group


def frame_of(shards: Sequence[ShardRef], spec: SuiteSpec) -> pd.DataFrame:
    """The shards' rows as the frame ``spec`` validates: only the columns it names. A
    named column the shards lack stays missing, so its expectation fails as it should."""
    frame = read_frame([s.path for s in shards], columns=columns_of(spec))
    if frame.empty and len(frame.columns) == 0:
        # No rows, so no columns: give the suite its columns, empty, so value checks
        # hold vacuously and only row-count expectations speak about emptiness.
        frame = pd.DataFrame({c: pd.Series([], dtype="object") for c in named_columns(spec)})
    return frame


def validate_shards(
    shards: Sequence[ShardRef], spec: SuiteSpec, size: int | None = None
) -> gx.GateResult:
    """Run ``spec`` over the rows of ``shards`` (see the module's docstring)."""
    size = size or chunk_rows()
    row_part, whole_part = split(spec)
    chunk_results: list[gx.GateResult] = []
    if row_part is not None:
        for group in list(chunks(shards, size)) or [[]]:
            frame = frame_of(group, row_part)
            chunk_results.append(gx.validate(frame, row_part))
            del frame  # before the next chunk is read
    whole_result = None
    if whole_part is not None:
        whole_result = gx.validate(frame_of(shards, whole_part), whole_part)
    return merge(spec, chunk_results, whole_result, sum(s.rows for s in shards))


def _key(failure: dict[str, Any]) -> tuple[str, str]:
    return failure["expectation"], repr(sorted(failure.get("kwargs", {}).items()))


def _chunked(failure: dict[str, Any], n_rows: int) -> dict[str, Any]:
    """A row-wise failure seen on one chunk, restated for the whole stage: a chunk that
    passed had no unexpected row (no ``mostly`` here), so summed unexpected counts are
    exact; the shares and missing counts a chunk reported are not, and are dropped."""
    observed = {
        k: v
        for k, v in (failure.get("observed") or {}).items()
        if k in ("unexpected_count", "partial_unexpected", "details")
    }
    observed["element_count"] = n_rows
    return {**failure, "observed": observed}


def merge(
    spec: SuiteSpec,
    chunk_results: Sequence[gx.GateResult],
    whole_result: gx.GateResult | None,
    n_rows: int,
) -> gx.GateResult:
    """One suite's result from its row-wise chunks' results and its whole-dataset one."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for part in chunk_results:
        for failure in part.failures:
            key = _key(failure)
            if key not in merged:
                merged[key] = _chunked(failure, n_rows)
                continue
            seen, new = merged[key]["observed"], failure.get("observed") or {}
            seen["unexpected_count"] = seen.get("unexpected_count", 0) + (
                new.get("unexpected_count") or 0
            )
            examples = seen.get("partial_unexpected", []) + new.get("partial_unexpected", [])
            if examples:
                seen["partial_unexpected"] = examples[: gx.MAX_EXAMPLES]
            merged[key]["exception"] = merged[key].get("exception") or failure.get("exception")
    parts = [*chunk_results, *([whole_result] if whole_result else [])]
    for failure in whole_result.failures if whole_result else []:
        merged[_key(failure)] = failure
    columns: list[str] = []
    for part in parts:
        columns += [c for c in part.columns if c not in columns]
    return gx.GateResult(
        suite=spec.name,
        severity=spec.severity,
        success=all(p.success for p in parts),
        n_expectations=len(spec.expectations),
        n_failed=len(merged),
        n_rows=n_rows,
        columns=columns,
        failures=list(merged.values()),
        observed=whole_result.observed if whole_result else [],
        duration_s=round(sum(p.duration_s for p in parts), 4),
    )
