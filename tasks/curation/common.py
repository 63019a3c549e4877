"""Small helpers every curation step shares: dotted field access, the text a step looks
at, the rejection row, and a spool that keeps a stream's rows on disk between passes."""

from __future__ import annotations

import math
import pickle
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, Any

from tasks.core.records import Rejection


def get_path(row: dict[str, Any], path: str) -> Any:
    """``row["judge"]["score"]`` for ``"judge.score"``; ``None`` when any step is missing.

    A key that itself contains dots (``"judge.score"`` as one column) wins over the path.
    """
    if path in row:
        return row[path]
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def text_of(row: dict[str, Any], fields: list[str]) -> str:
    """The text a step compares: the named fields joined by blank lines (missing: empty)."""
    parts = []
    for f in fields:
        value = get_path(row, f)
        parts.append("" if value is None else str(value))
    return "\n\n".join(parts)


def number(value: Any) -> float | None:
    """A score as a float, or ``None`` when it is missing or not a finite number."""
    if isinstance(value, bool):
        return float(value)
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def spool_scores(rows: Iterable[dict[str, Any]], spool: Spool, field: str) -> list[float]:
    """Write every row to ``spool`` and return its ``metadata[field]`` score, NaN where
    it is missing or not a finite number (what a selection over the whole set ranks)."""
    scores = []
    for row in rows:
        spool.append(row)
        value = number((row.get("metadata") or {}).get(field))
        scores.append(math.nan if value is None else value)
    return scores


def rejection(
    row: dict[str, Any], stage: str, reason: str, detail: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The rejection row a GlobalStage yields (the row ``StageResult.reject`` writes)."""
    return Rejection.of(row, stage, reason, detail).row()


class Spool:
    """Rows written once and read back once, in order, from an anonymous temp file.

    Steps that must see every row before deciding (sorting by quality, shares of the
    whole) keep only small per-row facts in memory and the rows themselves here, so
    memory does not hold the dataset. Pickle keeps the rows' Python types as they came.
    The file lives in the system temp directory (``TMPDIR``) and is gone once closed.
    """

    def __init__(self) -> None:
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix="winnow-spool-")
        self._pickler = pickle.Pickler(self._file, protocol=pickle.HIGHEST_PROTOCOL)
        self.count = 0

    def append(self, row: dict[str, Any]) -> None:
        self._pickler.dump(row)
        self._pickler.clear_memo()
        self.count += 1

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self._file.flush()
        self._file.seek(0)
        unpickler = pickle.Unpickler(self._file)
        for _ in range(self.count):
            yield unpickler.load()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
