"""Input tables a user brings: JSON Lines, Parquet, CSV, or a Hugging Face ``datasets``
folder saved to disk (``Dataset.save_to_disk``).

Rows stream one batch at a time (memory stays flat however large the file), each with
its 1-based row number, so an error names the row and an example can name the input
row it came from (:func:`source_id`). Reading needs no ``datasets`` install: a saved
dataset is Arrow stream files plus a ``state.json`` that lists them in order.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tasks.core.jsonl import InputError, numbered_rows

FORMATS = "JSON Lines (.jsonl), Parquet (.parquet), CSV (.csv, .tsv), or a datasets folder"
_BATCH = 1024


def table_format(path: Path) -> str:
    """``jsonl``, ``parquet``, ``csv``, ``tsv`` or ``hf``; an :class:`InputError` for
    anything else."""
    if path.is_dir():
        if (path / "dataset_dict.json").is_file():
            splits = json.loads((path / "dataset_dict.json").read_text()).get("splits", [])
            raise InputError(
                f"{path} holds a DatasetDict: name one split's folder, e.g. "
                + " or ".join(str(path / s) for s in splits[:3])
            )
        if (path / "state.json").is_file():
            return "hf"
        raise InputError(f"{path} is a folder but not a saved datasets Dataset (no state.json)")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".tsv"):
        return suffix[1:]
    raise InputError(f"{path}: unknown table format {suffix!r}; use {FORMATS}")


def read_table(path: str | Path, limit: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(row number, row)`` for each row of the table at ``path``, at most ``limit``."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"input not found: {path}")
    kind = table_format(path)
    rows = {
        "jsonl": _jsonl,
        "parquet": _parquet,
        "csv": _csv,
        "tsv": _csv,
        "hf": _saved_dataset,
    }[kind](path)
    for number, row in rows:
        if limit is not None and number > limit:
            return
        yield number, row


def table_columns(path: str | Path) -> list[str]:
    """The columns of a table (for a JSON Lines file: the keys of its first row)."""
    for _, row in read_table(path, limit=1):
        return list(row)
    raise InputError(f"{path}: no rows")


def texts_of(
    path: str | Path, field: str, limit: int | None = None
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(source id, text, row)`` for each row of a table whose ``field`` holds a text (a
    row without one is an :class:`InputError` naming it), at most ``limit``."""
    for number, row in read_table(path, limit):
        text = row.get(field)
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{path}: row {number}: no {field!r} text")
        yield source_id(row, number), text.strip(), row


def check_fields(path: str | Path, fields: list[str]) -> None:
    """Every field in ``fields`` is a column of the table (the error lists its columns)."""
    columns = table_columns(path)
    for field in fields:
        if field not in columns:
            raise InputError(
                f"{path} has no field {field!r}; its fields: {', '.join(map(str, columns))}"
            )


def count_checked(path: str | Path, fields: list[str], rows: Iterable[Any]) -> int:
    """Check that ``fields`` are columns of the table, then read ``rows`` (made from it)
    once to the end, so that a bad row stops the run before anything is paid for; their
    number, which must not be 0."""
    check_fields(path, fields)
    count = sum(1 for _ in rows)
    if count == 0:
        raise InputError(f"{path}: no rows")
    return count


def check_table(path: str | Path, required: list[str] | tuple[str, ...] = ()) -> int:
    """Read a whole table once, before anything is paid for: every row has the
    ``required`` fields (not null, not blank). The number of rows."""
    count = 0
    for count, row in read_table(path):  # noqa: B007
        missing = [f for f in required if row.get(f) is None or row.get(f) == ""]
        if missing:
            raise InputError(f"{path}: row {count} lacks field(s) {missing}")
    if count == 0:
        raise InputError(f"{path}: no rows")
    return count


def source_id(row: dict[str, Any], number: int, id_field: str = "id") -> str:
    """How an example names the input row it came from: the row's ``id`` when it has
    one, else its row number (1-based)."""
    value = row.get(id_field)
    if value is None or (isinstance(value, str) and not value.strip()):
        return str(number)
    return str(value)


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as fh:
        yield from numbered_rows(fh, lambda n: f"{path}:{n}")


def _csv(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with path.open(encoding="utf-8", newline="") as fh:
        for number, row in enumerate(csv.DictReader(fh, delimiter=delimiter), start=1):
            yield number, dict(row)


def _parquet(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several kinds for a file that is not Parquet
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
    number = 0
    for batch in file.iter_batches(batch_size=_BATCH):
        for row in batch.to_pylist():
            number += 1
            yield number, row


def _saved_dataset(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow as pa

    state = json.loads((path / "state.json").read_text())
    files = [f["filename"] for f in state.get("_data_files", [])]
    if not files:
        raise InputError(f"{path}/state.json lists no data files")
    number = 0
    for name in files:
        with pa.memory_map(str(path / name)) as source:
            reader = pa.ipc.open_stream(source)
            for batch in reader:
                for row in batch.to_pylist():
                    number += 1
                    yield number, row
