"""Input tables in every format a user may bring, read the same way."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.core.jsonl import InputError
from tasks.core.tables import read_table, source_id, table_columns
from tasks.recipes.code_sft.inputs import check_problems, problem_rows

ROWS = [
    {
        "id": "q-1",
        "question": "Write add(a, b) returning the sum of a and b.",
        "tests": ["assert add(1, 2) == 3"],
    },
    {
        "id": "q-2",
        "question": "Write neg(x) returning minus x, for any integer.",
        "tests": ["assert neg(2) == -2"],
    },
    {"id": "", "question": "Write twice(s) returning the string s repeated twice.", "tests": []},
]


def write(kind: str, folder: Path, rows: list[dict] = ROWS) -> Path:
    if kind == "jsonl":
        path = folder / "problems.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif kind == "parquet":
        path = folder / "problems.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=2)
    elif kind == "csv":
        path = folder / "problems.csv"
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["id", "question", "tests"])
            writer.writeheader()
            for r in rows:
                writer.writerow(dict(r, tests="\n".join(r["tests"])))
    else:  # a real folder written by the datasets library
        datasets = pytest.importorskip("datasets")
        path = folder / "problems-hf"
        datasets.Dataset.from_list(rows).save_to_disk(str(path))
    return path


@pytest.mark.parametrize("kind", ["jsonl", "parquet", "csv", "hf"])
def test_every_format_reads_the_same_rows(tmp_path: Path, kind: str) -> None:
    path = write(kind, tmp_path)
    rows = list(read_table(path))
    assert [n for n, _ in rows] == [1, 2, 3]
    assert [r["question"] for _, r in rows] == [r["question"] for r in ROWS]
    assert [source_id(r, n) for n, r in rows] == ["q-1", "q-2", "3"]  # no id: the row number
    assert set(table_columns(path)) == {"id", "question", "tests"}
    assert [n for n, _ in read_table(path, limit=2)] == [1, 2]

    problems = list(problem_rows(str(path), "question", "tests"))
    assert [p["source_id"] for p in problems] == ["q-1", "q-2", "3"]
    assert problems[0]["reference_tests"].strip() == "assert add(1, 2) == 3"
    assert problems[2]["reference_tests"] == ""
    assert problems[0]["problem"] == ROWS[0]["question"] and problems[0]["id"].startswith("p-")
    assert check_problems(str(path), "question", "tests") == 3


def test_a_parquet_file_streams_in_batches(tmp_path: Path) -> None:
    rows = [{"id": i, "question": f"problem number {i} " * 3} for i in range(5000)]
    path = tmp_path / "many.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=700)
    numbers = [n for n, _ in read_table(path)]
    assert numbers == list(range(1, 5001))
    assert source_id(next(r for n, r in read_table(path) if n == 10), 10) == "9"  # its own id


def test_what_cannot_be_read_is_named_before_anything_runs(tmp_path: Path) -> None:
    path = write("jsonl", tmp_path)
    with pytest.raises(InputError, match="no field 'problem'; its fields: id, question, tests"):
        check_problems(str(path), "problem", None)
    with pytest.raises(InputError, match="no field 'answers'"):
        check_problems(str(path), "question", "answers")
    blank = tmp_path / "blank.jsonl"
    blank.write_text(json.dumps({"question": "Write a function that adds."}) + "\n"
                     + json.dumps({"question": "  "}) + "\n")  # fmt: skip
    with pytest.raises(InputError, match="row 2: no 'question' text"):
        check_problems(str(blank), "question", None)
    (tmp_path / "x.xlsx").touch()
    with pytest.raises(InputError, match="unknown table format '.xlsx'"):
        list(read_table(tmp_path / "x.xlsx"))
    with pytest.raises(InputError, match="input not found"):
        list(read_table(tmp_path / "missing.parquet"))
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        list(read_table(tmp_path / "bad.parquet"))


def test_a_dataset_dict_asks_for_one_split(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "dd"
    data = datasets.Dataset.from_list(ROWS)
    datasets.DatasetDict({"train": data, "test": data}).save_to_disk(str(folder))
    with pytest.raises(InputError, match="DatasetDict: name one split's folder"):
        list(read_table(folder))
    assert len(list(read_table(folder / "train"))) == 3
