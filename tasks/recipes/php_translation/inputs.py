"""Inputs of the PHP translation recipe: verified Python examples.

A source is a table (JSON Lines, Parquet, CSV or a saved ``datasets`` folder, see
:mod:`tasks.core.tables`), a run's output directory, or the id of a code SFT run in
the catalog (its published ``dataset.jsonl``). Rows are either plain
``{"problem", "solution", "tests"}`` or code SFT examples (chat ``messages`` with the
solution in the assistant's ```python fence, tests in ``metadata.tests``). Every row is
read and checked before anything is paid for; a row that cannot be read is an
``InputError`` naming the file and the row, never a silent loss.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tasks.core.jsonl import InputError
from tasks.core.paths import SOURCE_ROOT
from tasks.core.tables import read_table, source_id

# Relative, so a deployment's parameters do not carry one machine's paths; a relative
# source that is not found from the working directory is looked up in the source tree.
DEFAULT_SOURCE_NAME = "examples/php/verified_python.jsonl"
DEFAULT_SOURCE = SOURCE_ROOT / DEFAULT_SOURCE_NAME

_PY_FENCE = re.compile(r"```[ \t]*(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)


class PythonExample(BaseModel):
    """One verified Python example, as the recipe's first stage receives it."""

    id: str
    problem: str
    python_solution: str
    python_tests: str
    topic: str = ""
    difficulty: str = ""
    source_id: str = ""


def resolve_source(source: str) -> Path:
    """The table a source names: a file, a saved datasets folder, a directory holding a
    ``dataset.jsonl``, or a run id (or unique prefix) in the catalog."""
    path = Path(source).expanduser()
    if not path.exists() and not path.is_absolute() and (SOURCE_ROOT / path).exists():
        path = SOURCE_ROOT / path
    if path.is_file():
        return path.resolve()
    if path.is_dir():
        if (path / "dataset.jsonl").is_file():
            return (path / "dataset.jsonl").resolve()
        if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
            return path.resolve()  # a datasets folder (read_table names a DatasetDict's splits)
        raise InputError(f"{path} has no dataset.jsonl and is no saved datasets folder")
    from tasks.store.catalog import Catalog

    try:
        run = Catalog().get_run(source)
    except Exception as exc:  # an ambiguous prefix, an unreadable catalog
        raise InputError(f"source {source!r}: {exc}") from exc
    if run is None:
        raise InputError(f"source {source!r} is neither a file, a directory nor a run id")
    out_dir = run.get("out_dir")
    if not out_dir or not (Path(out_dir) / "dataset.jsonl").is_file():
        raise InputError(
            f"run {run['run_id']} ({run.get('status')}) has no published dataset.jsonl"
            + (f" in {out_dir}" if out_dir else "")
        )
    return Path(out_dir) / "dataset.jsonl"


def to_python_example(row: dict[str, Any], where: str, number: int = 0) -> PythonExample:
    """A source row (row ``number`` of its file) as a :class:`PythonExample`; ``where``
    names it in errors."""
    if "messages" in row:
        messages = row.get("messages") or []
        user = next((m.get("content", "") for m in messages if m.get("role") == "user"), "")
        answer = next((m.get("content", "") for m in messages if m.get("role") == "assistant"), "")
        fence = _PY_FENCE.search(answer or "")
        meta = row.get("metadata") or {}
        problem, solution, tests = user, fence.group(1) if fence else "", meta.get("tests", "")
        topic, difficulty = meta.get("topic", ""), meta.get("difficulty", "")
    else:
        problem, solution, tests = row.get("problem"), row.get("solution"), row.get("tests")
        topic, difficulty = row.get("topic", ""), row.get("difficulty", "")
    missing = [
        name
        for name, value in (("problem", problem), ("solution", solution), ("tests", tests))
        if not isinstance(value, str) or not value.strip()
    ]
    if missing:
        raise InputError(f"{where}: no {', '.join(missing)} (need problem, solution, tests)")
    own_id = str(row.get("id") or "")
    digest = hashlib.sha256(f"{problem}\x1f{solution}\x1f{tests}".encode()).hexdigest()[:12]
    return PythonExample(
        id=f"php-{own_id or digest}",
        problem=problem.strip(),  # type: ignore[union-attr]
        python_solution=solution.strip() + "\n",  # type: ignore[union-attr]
        python_tests=tests.strip() + "\n",  # type: ignore[union-attr]
        topic=topic or "",
        difficulty=difficulty or "",
        source_id=source_id(row, number) if number else own_id or digest,
    )


def check_source(path: Path, limit: int | None = None) -> int:
    """Read every row once (up to ``limit``); raise on the first bad one; count them."""
    count = 0
    seen: set[str] = set()
    for count, example in enumerate(iter_examples(path, limit), start=1):  # noqa: B007
        if example.id in seen:
            raise InputError(f"{path}: row {count}: duplicate id {example.source_id!r}")
        seen.add(example.id)
    if count == 0:
        raise InputError(f"{path}: no rows")
    return count


def iter_examples(path: Path, limit: int | None = None) -> Iterator[PythonExample]:
    for number, row in read_table(path, limit):
        yield to_python_example(row, f"{path}: row {number}", number)
