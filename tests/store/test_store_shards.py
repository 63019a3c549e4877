"""Parquet shards: exact round trips, atomic writes, streaming reads, fingerprints."""

from __future__ import annotations

import math
import tempfile
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.store import shards
from tasks.store.shards import (
    ABSENT_COLUMN,
    iter_shards,
    read_frame,
    read_shard,
    shard_info,
    write_shard,
    write_shard_stream,
)

# ---------------------------------------------------------------- strategies

keys = st.text(min_size=1, max_size=6).filter(lambda k: k != ABSENT_COLUMN)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # beyond int64 too: those go to JSON
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)
# Values with no JSON form get a column each (mixing them with other types is refused).
typed_columns = st.fixed_dictionaries(
    {},
    optional={
        "~bytes": st.none() | st.binary(max_size=8),
        "~date": st.none() | st.dates(),
        "~naive": st.none() | st.datetimes(),
        "~utc": st.none() | st.datetimes(timezones=st.just(UTC)),
    },
)
records = st.lists(
    st.builds(
        lambda plain, typed: {**plain, **typed},
        st.dictionaries(keys.filter(lambda k: not k.startswith("~")), json_values, max_size=5),
        typed_columns,
    ),
    max_size=15,
)


def _same(a: Any, b: Any) -> bool:
    """Equality that also tells 1 from 1.0 from True (== doesn't)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, float) and a == 0.0:
        return math.copysign(1, a) == math.copysign(1, b)
    return a == b


# ---------------------------------------------------------------- round trip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=records)
def test_round_trip_is_exact(rows: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.parquet"
        info = write_shard(rows, path)
        back = read_shard(path)
        assert info.rows == len(rows) == len(back)
        for written, read in zip(rows, back, strict=True):
            assert _same(_normalise_datetimes(written), _normalise_datetimes(read)), (
                written,
                read,
            )
        # The streaming writer gives the same content and the same fingerprint.
        streamed = write_shard_stream(iter(rows), Path(tmp) / "t.parquet", chunk_rows=4)
        assert streamed.fingerprint == info.fingerprint
        assert [_normalise_datetimes(r) for r in read_shard(streamed.path)] == [
            _normalise_datetimes(r) for r in rows
        ]


def _normalise_datetimes(value: Any) -> Any:
    """UTC comes back as ZoneInfo('UTC') rather than timezone.utc: same instant, same zone."""
    if isinstance(value, dict):
        return {k: _normalise_datetimes(v) for k, v in value.items()}
    if isinstance(value, datetime) and value.tzinfo is not None:
        return ("utc", value.replace(tzinfo=None))
    return value


def test_nested_values_of_varying_shape_and_missing_keys(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "tests": [{"name": "t1", "ok": True}], "score": 1},
        {"id": "b", "tests": {"unexpected": "shape"}, "score": 2.5, "extra": None},
        {"id": "c"},
        {"id": "d", "score": "n/a", "big": 2**80, "nan": float("nan")},
    ]
    path = write_shard(rows, tmp_path / "s.parquet").path
    back = read_shard(path)
    assert all(_same(a, b) for a, b in zip(rows, back, strict=True))
    assert "extra" in back[1] and back[1]["extra"] is None  # None is not "missing"
    assert "extra" not in back[0]  # missing is not None
    meta = pq.read_schema(path).metadata[shards.METADATA_KEY]
    assert b'"json_columns": ["tests", "score", "big"]' in meta


def test_scalar_columns_are_native_parquet_for_duckdb(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "n": 1, "x": 0.5, "ok": True, "at": datetime(2026, 1, 1, tzinfo=UTC)},
        {"id": "b", "n": None, "x": 1.5, "ok": False, "at": datetime(2026, 1, 2, tzinfo=UTC)},
    ]
    path = write_shard(rows, tmp_path / "s.parquet").path
    con = duckdb.connect()
    result = con.execute(
        "SELECT sum(x), count(n), count(*) FILTER (WHERE ok) FROM read_parquet(?)", [str(path)]
    ).fetchone()
    assert result == (2.0, 1, 1)
    types = dict(
        con.execute(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()[i][:2]
        for i in range(5)
    )
    assert types["n"] == "BIGINT" and types["ok"] == "BOOLEAN" and types["id"] == "VARCHAR"


def test_empty_shards(tmp_path: Path) -> None:
    info = write_shard([], tmp_path / "empty.parquet")
    assert info.rows == 0 and info.path.exists()
    assert read_shard(info.path) == []
    assert list(iter_shards([info.path, info.path])) == []
    frame = read_frame([info.path])
    assert len(frame) == 0
    assert len(read_frame([])) == 0
    # Rows with no columns are still rows.
    assert read_shard(write_shard([{}, {}], tmp_path / "blank.parquet").path) == [{}, {}]
    # An empty stream is an empty shard too.
    assert write_shard_stream(iter([]), tmp_path / "s.parquet").rows == 0


def test_write_is_atomic_and_leaves_no_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "shards" / "s.parquet"
    write_shard([{"a": 1}], path)

    def rows() -> Any:
        yield {"a": 2}
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_shard_stream(rows(), path, chunk_rows=1)
    with pytest.raises(TypeError, match="can't be stored"):
        write_shard([{"a": object()}], path)
    assert read_shard(path) == [{"a": 1}]  # the previous content, whole
    assert sorted(p.name for p in path.parent.iterdir()) == ["s.parquet"]  # no temp files


def test_refuses_what_it_cannot_round_trip(tmp_path: Path) -> None:
    plus_two = timezone(timedelta(hours=2))
    with pytest.raises(TypeError, match="not UTC"):
        write_shard([{"at": datetime(2026, 1, 1, tzinfo=plus_two)}], tmp_path / "a.parquet")
    with pytest.raises(ValueError, match="reserved"):
        write_shard([{ABSENT_COLUMN: 1}], tmp_path / "b.parquet")
    with pytest.raises(TypeError, match="column names must be str"):
        write_shard([{1: "x"}], tmp_path / "c.parquet")  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="column 'b' mixes bytes, str"):
        write_shard([{"b": b"x"}, {"b": "x"}], tmp_path / "e.parquet")
    with pytest.raises(TypeError, match="must be a dict"):
        write_shard(["x"], tmp_path / "d.parquet")  # type: ignore[list-item]


def test_fingerprint_is_a_content_key(tmp_path: Path) -> None:
    rows = [{"a": 1, "b": {"x": [1, 2]}}, {"a": 2}]
    one = write_shard(rows, tmp_path / "one.parquet")
    two = write_shard([dict(reversed(list(r.items()))) for r in rows], tmp_path / "two.parquet")
    assert one.fingerprint == two.fingerprint  # key order within a record doesn't matter
    assert write_shard(rows[::-1], tmp_path / "r.parquet").fingerprint != one.fingerprint
    assert write_shard([{"a": 1.0}], tmp_path / "f.parquet").fingerprint != (
        write_shard([{"a": 1}], tmp_path / "i.parquet").fingerprint
    )
    stored = shard_info(one.path)
    assert (stored.rows, stored.fingerprint, stored.columns) == (2, one.fingerprint, ["a", "b"])


def test_iter_shards_streams_across_batches_and_selects_columns(tmp_path: Path) -> None:
    n = shards.READ_BATCH_ROWS * 2 + 7
    first = write_shard(
        [{"i": i, "meta": {"k": i}, "text": f"t{i}"} for i in range(n)], tmp_path / "a.parquet"
    )
    second = write_shard([{"i": n, "other": True}], tmp_path / "b.parquet")
    it = iter_shards([first.path, second.path], columns=["i", "meta"])
    assert next(it) == {"i": 0, "meta": {"k": 0}}
    rest = list(it)
    assert len(rest) == n  # n - 1 from the first shard, 1 from the second
    assert rest[-1] == {"i": n}  # the second shard has no "meta" column: left out


def test_read_frame_types(tmp_path: Path) -> None:
    a = write_shard(
        [{"id": "a", "n": 1, "ok": True, "obj": {"x": 1}}, {"id": "b", "n": None, "ok": None}],
        tmp_path / "a.parquet",
    )
    b = write_shard([{"id": "c", "n": 3, "ok": False, "obj": [1]}], tmp_path / "b.parquet")
    frame = read_frame([a.path, b.path])
    assert list(frame["id"]) == ["a", "b", "c"]
    assert str(frame["n"].dtype) == "Int64" and frame["n"].tolist()[0] == 1  # not 1.0
    assert str(frame["ok"].dtype) == "boolean"
    assert frame["obj"].tolist()[0] == {"x": 1} and frame["obj"].tolist()[2] == [1]
    assert list(read_frame([a.path], columns=["id"]).columns) == ["id"]
    dated = write_shard([{"d": date(2026, 1, 1)}], tmp_path / "d.parquet")
    assert read_shard(dated.path) == [{"d": date(2026, 1, 1)}]
