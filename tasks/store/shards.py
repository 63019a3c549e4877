"""Stage outputs as Parquet shards: one file per batch of records, written atomically.

Records are JSON-like dicts whose values vary in shape from row to row (a ``tests`` list
here, a judge's ``verdict`` dict there), which Parquet's fixed schema can't hold. So each
column gets one storage kind, decided from every value in it:

- all ``str`` / ``int`` (64-bit) / ``float`` / ``bool`` / ``bytes`` / ``date`` /
  ``datetime`` (naive or UTC) -> the native Parquet type, queryable as is by DuckDB;
- anything else (dicts, lists, mixed types such as ``1`` and ``"1"``, big ints)
  -> JSON text, listed under ``json_columns`` in the file's schema metadata and decoded
  transparently by the readers here.

A key missing from a row is remembered as missing (not turned into ``None``) in a hidden
list column, so a read gives back exactly the dicts that were written. Limits of
"exactly": dict keys must be ``str``, tuples come back as lists, strings must be valid
UTF-8, and what has no exact form is refused with a ``TypeError`` rather than silently
converted: a non-UTC timezone, and a column mixing bytes/dates/datetimes with other
types (those have no JSON form; nested inside a dict or list they are refused too).

The *fingerprint* is a sha256 over the canonical JSON of the rows, in order. It depends
on content only (not on the Parquet writer's version or compression), so it serves as a
cache key for the next stage; it is stored in the file's metadata too (``shard_info``).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from tasks.core.records import canonical_json
from tasks.store import fsio

if TYPE_CHECKING:  # pandas costs ~1 s to import; only read_frame needs it
    import pandas as pd

ABSENT_COLUMN = "__winnow_absent__"
METADATA_KEY = b"winnow"
FORMAT_VERSION = 1
READ_BATCH_ROWS = 1024
STREAM_CHUNK_ROWS = 5000

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_NATIVE_ONLY = frozenset({"bytes", "date", "datetime", "datetime_utc"})

_ARROW_TYPES: dict[str, pa.DataType] = {
    "str": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "bytes": pa.binary(),
    "date": pa.date32(),
    "datetime": pa.timestamp("us"),
    "datetime_utc": pa.timestamp("us", tz="UTC"),
    "json": pa.string(),
    "null": pa.null(),
}


class ShardRef(BaseModel):
    """A shard as stages pass it on: where it is, its rows, its content fingerprint."""

    path: str
    rows: int
    fingerprint: str


class ShardInfo(BaseModel):
    """What ``write_shard`` wrote: where, how many rows, and the content fingerprint."""

    path: Path | str  # a str when the shard lives behind a URL (see tasks.store.fsio)
    rows: int
    fingerprint: str
    columns: list[str] = []


# --------------------------------------------------------------------------- encoding


def _kind(value: Any) -> str:
    """The storage kind of one non-None value."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if _INT64_MIN <= value <= _INT64_MAX else "json"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, bytes):
        return "bytes"
    if isinstance(value, datetime):
        offset = value.utcoffset()
        if offset is None:
            return "datetime"
        if offset == timedelta(0):
            return "datetime_utc"
        raise TypeError(f"datetime {value.isoformat()} is not UTC: convert it before storing")
    if isinstance(value, date):
        return "date"
    if isinstance(value, dict | list | tuple):
        return "json"
    raise TypeError(f"value of type {type(value).__name__} can't be stored in a shard: {value!r}")


class _Plan:
    """Accumulates the columns (in first-seen order) and each column's kinds."""

    def __init__(self) -> None:
        self.kinds: dict[str, set[str]] = {}
        self.rows = 0
        self.has_absent = False
        self._hash = hashlib.sha256()

    def add(self, rows: Sequence[Mapping[str, Any]]) -> None:
        for row in rows:
            if not isinstance(row, Mapping):
                raise TypeError(f"a record must be a dict, got {type(row).__name__}")
            if self.rows and len(row) != len(self.kinds):
                self.has_absent = True
            for key, value in row.items():
                if not isinstance(key, str):
                    raise TypeError(f"column names must be str, got {key!r}")
                if key == ABSENT_COLUMN:
                    raise ValueError(f"{ABSENT_COLUMN!r} is reserved")
                kinds = self.kinds.get(key)
                if kinds is None:
                    kinds = self.kinds[key] = set()
                    if self.rows:
                        self.has_absent = True  # earlier rows lacked this key
                if value is not None:
                    kinds.add(_kind(value))
            self._hash.update(canonical_json(row).encode("utf-8"))
            self._hash.update(b"\n")
            self.rows += 1

    @property
    def fingerprint(self) -> str:
        return self._hash.hexdigest()

    def column_kinds(self) -> dict[str, str]:
        out = {}
        for key, kinds in self.kinds.items():
            if not kinds:
                out[key] = "null"
            elif len(kinds) == 1:
                out[key] = next(iter(kinds))
            elif kinds & _NATIVE_ONLY:
                raise TypeError(
                    f"column {key!r} mixes {', '.join(sorted(kinds))}: bytes, dates and "
                    "datetimes have no JSON form, so they can't share a column with other types"
                )
            else:
                out[key] = "json"
        return out


def _dump_json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=True)
    except TypeError as exc:
        raise TypeError(f"a nested value is not JSON-like ({exc}): {value!r}") from exc


def _encode(
    rows: Sequence[Mapping[str, Any]], kinds: dict[str, str], with_absent: bool
) -> pa.Table:
    arrays: dict[str, pa.Array] = {}
    for column, kind in kinds.items():
        values = [row.get(column) for row in rows]
        if kind == "json":
            values = [None if v is None else _dump_json(v) for v in values]
        arrays[column] = pa.array(values, type=_ARROW_TYPES[kind])
    if with_absent or not kinds:
        # Also the row carrier when rows have no columns at all ([{}, {}] is two rows).
        absent = [[c for c in kinds if c not in row] or None for row in rows]
        arrays[ABSENT_COLUMN] = pa.array(absent, type=pa.list_(pa.string()))
    return pa.table(arrays) if arrays else pa.table({})


def _metadata(plan: _Plan, kinds: dict[str, str], with_absent: bool) -> dict[bytes, bytes]:
    meta = {
        "version": FORMAT_VERSION,
        "columns": list(kinds),
        "json_columns": [c for c, k in kinds.items() if k == "json"],
        "absent_column": ABSENT_COLUMN if (with_absent or not kinds) else None,
        "rows": plan.rows,
        "fingerprint": plan.fingerprint,
    }
    return {METADATA_KEY: json.dumps(meta).encode("utf-8")}


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _finish(tmp: Path, path: Path) -> None:
    """Make ``tmp`` durable, then move it over ``path`` in one step."""
    _fsync(tmp)
    os.replace(tmp, path)
    try:
        _fsync(path.parent)
    except OSError:  # some filesystems can't fsync a directory; the rename still happened
        pass


def write_shard(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> ShardInfo:
    """Write ``rows`` as one Parquet file at ``path``, atomically.

    The file appears at ``path`` complete or not at all (temp file + ``os.replace``); an
    existing file there is replaced. Zero rows make a valid, empty shard. ``path`` may be
    an fsspec URL (``s3://...``): the file is then written in one piece.
    """
    rows = list(rows)
    plan = _Plan()
    plan.add(rows)
    kinds = plan.column_kinds()
    table = _encode(rows, kinds, plan.has_absent)
    table = table.replace_schema_metadata(_metadata(plan, kinds, plan.has_absent))
    if fsio.is_remote(path):
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer, compression="zstd")
        fsio.write_bytes(str(path), buffer.getvalue().to_pybytes())
        return ShardInfo(
            path=str(path), rows=plan.rows, fingerprint=plan.fingerprint, columns=list(kinds)
        )
    path = fsio.local_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        pq.write_table(table, tmp, compression="zstd")
        _finish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return ShardInfo(path=path, rows=plan.rows, fingerprint=plan.fingerprint, columns=list(kinds))


def write_shard_stream(
    rows: Iterable[Mapping[str, Any]],
    path: str | os.PathLike[str],
    chunk_rows: int = STREAM_CHUNK_ROWS,
) -> ShardInfo:
    """Like ``write_shard`` for an iterable of any length, in flat memory.

    A column's kind is only known after its last value, so the rows are spooled to a temp
    file in chunks (pickled, which keeps every Python type exact) while the plan is built,
    then encoded chunk by chunk into row groups. Disk, not memory, holds the data twice.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plan = _Plan()
    tmp = _tmp_path(path)
    with tempfile.TemporaryFile(dir=path.parent, prefix=".spool-") as spool:
        chunk: list[Mapping[str, Any]] = []
        n_chunks = 0
        for row in rows:
            chunk.append(row)
            if len(chunk) >= chunk_rows:
                plan.add(chunk)
                pickle.dump(chunk, spool, protocol=pickle.HIGHEST_PROTOCOL)
                n_chunks += 1
                chunk = []
        if chunk or n_chunks == 0:
            plan.add(chunk)
            pickle.dump(chunk, spool, protocol=pickle.HIGHEST_PROTOCOL)
            n_chunks += 1
        kinds = plan.column_kinds()
        metadata = _metadata(plan, kinds, plan.has_absent)
        spool.seek(0)
        writer: pq.ParquetWriter | None = None
        try:
            for _ in range(n_chunks):
                table = _encode(pickle.load(spool), kinds, plan.has_absent)
                table = table.replace_schema_metadata(metadata)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
                writer.write_table(table)
            assert writer is not None
            writer.close()
            writer = None
            _finish(tmp, path)
        finally:
            if writer is not None:
                writer.close()
            tmp.unlink(missing_ok=True)
    return ShardInfo(path=path, rows=plan.rows, fingerprint=plan.fingerprint, columns=list(kinds))


# --------------------------------------------------------------------------- decoding


def _read_meta(schema: pa.Schema) -> dict[str, Any]:
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:  # a plain Parquet file from elsewhere: read it as it is
        return {"columns": [n for n in schema.names], "json_columns": [], "absent_column": None}
    return json.loads(raw)


def shard_info(path: str | os.PathLike[str]) -> ShardInfo:
    """Rows, columns and fingerprint of an existing shard, from its metadata alone."""
    with fsio.open_input(path) as source:
        file_meta = pq.read_metadata(source)
    meta = _read_meta(file_meta.schema.to_arrow_schema())
    return ShardInfo(
        path=str(path) if fsio.is_remote(path) else fsio.local_path(path),
        rows=file_meta.num_rows,
        fingerprint=meta.get("fingerprint", ""),
        columns=meta.get("columns", []),
    )


def _decode_rows(rows: list[dict[str, Any]], json_columns: Iterable[str]) -> list[dict[str, Any]]:
    json_columns = [c for c in json_columns if rows and c in rows[0]]
    for row in rows:
        for column in json_columns:
            value = row[column]
            if value is not None:
                row[column] = json.loads(value)
        absent = row.pop(ABSENT_COLUMN, None)
        if absent:
            for column in absent:
                row.pop(column, None)
    return rows


def _selected(meta: dict[str, Any], columns: Sequence[str] | None) -> list[str] | None:
    """The physical columns to read for the requested logical ``columns``."""
    present = set(meta["columns"])
    absent_col = meta.get("absent_column")
    if columns is None:
        return None
    chosen = [c for c in columns if c in present]
    if absent_col:
        chosen.append(absent_col)
    return chosen


def iter_shards(
    paths: Iterable[str | os.PathLike[str]], columns: Sequence[str] | None = None
) -> Iterator[dict[str, Any]]:
    """Yield every record of every shard, in order, a batch at a time (flat memory).

    With ``columns``, each record holds only those of them that the shard has.
    """
    for path in paths:
        with fsio.open_input(path) as source:
            parquet = pq.ParquetFile(source)
            meta = _read_meta(parquet.schema_arrow)
            selected = _selected(meta, columns)
            if parquet.metadata.num_rows == 0:
                continue
            for batch in parquet.iter_batches(batch_size=READ_BATCH_ROWS, columns=selected):
                rows = batch.to_pylist()
                if columns is not None:
                    wanted = set(columns)
                    for row in rows:
                        if row.get(ABSENT_COLUMN):
                            row[ABSENT_COLUMN] = [c for c in row[ABSENT_COLUMN] if c in wanted]
                yield from _decode_rows(rows, meta["json_columns"])


def read_shard(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All records of one shard, exactly as they were written."""
    return list(iter_shards([path]))


def read_frame(
    paths: Iterable[str | os.PathLike[str]], columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """The shards as one DataFrame, e.g. for a quality gate.

    JSON columns hold decoded Python objects; integer and boolean columns use pandas'
    nullable dtypes so a missing value doesn't turn ``3`` into ``3.0``. A key missing from
    a record reads as a missing value (a frame can't tell absent from null).
    """
    import pandas as pd

    pandas_types = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
    frames: list[pd.DataFrame] = []
    for path in paths:
        with fsio.open_input(path) as source:
            parquet = pq.ParquetFile(source)
            meta = _read_meta(parquet.schema_arrow)
            table = parquet.read(columns=_selected(meta, columns))
        if meta.get("absent_column") and meta["absent_column"] in table.column_names:
            table = table.drop_columns([meta["absent_column"]])
        json_columns = [c for c in meta["json_columns"] if c in table.column_names]
        decoded = {
            c: [None if v is None else json.loads(v) for v in table.column(c).to_pylist()]
            for c in json_columns
        }
        frame = table.to_pandas(types_mapper=pandas_types.get)
        for column, values in decoded.items():
            frame[column] = pd.Series(values, index=frame.index, dtype=object)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=list(columns or []))
    non_empty = [f for f in frames if len(f)] or frames[:1]
    frame = non_empty[0] if len(non_empty) == 1 else pd.concat(non_empty, ignore_index=True)
    return frame.reset_index(drop=True)
