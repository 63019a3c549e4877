"""The request journal: every completed LLM request, durably, keyed by ``request_key``.

The journal is what makes a crashed, killed or re-run job free: before the client hands
back an answer it has been committed here, and before it sends a request it looks here.
SQLite in WAL mode with ``synchronous=FULL``: a commit survives a killed process and a
power loss; readers never block the writer; several processes may share the file
(writes wait on ``busy_timeout``).

Failed requests are not journaled, so a re-run retries exactly those.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    key TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    template TEXT NOT NULL DEFAULT '',
    template_version TEXT NOT NULL DEFAULT '',
    text TEXT NOT NULL,
    finish_reason TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    latency_s REAL NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    batch INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 1,
    request TEXT,
    created_at REAL NOT NULL,
    mean_logprob REAL,
    logprob_tokens INTEGER
);
CREATE INDEX IF NOT EXISTS requests_template ON requests (template, template_version);
"""

# Columns added after the first journals were written: (name, SQL type). A journal file
# without them gains them on open (nullable, so its old rows read as "not recorded").
_ADDED_COLUMNS = (("mean_logprob", "REAL"), ("logprob_tokens", "INTEGER"))

_COLUMNS = (
    "key",
    "provider",
    "model",
    "template",
    "template_version",
    "text",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "latency_s",
    "cost_usd",
    "batch",
    "attempts",
    "request",
    "created_at",
    "mean_logprob",
    "logprob_tokens",
)

# SQLite's default limit on host parameters is 32766 in recent versions, 999 in old ones.
_CHUNK = 900


class JournalEntry(BaseModel):
    """One completed request."""

    key: str
    provider: str
    model: str
    template: str = ""
    template_version: str = ""
    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cost_usd: float = 0.0
    batch: bool = False  # answered through a batch API (priced at the batch discount)
    attempts: int = 1  # sends it took, retries included
    request: dict[str, Any] | None = None  # messages and params, for provenance
    created_at: float = Field(default_factory=time.time)
    # The answer's mean token log-probability and how many tokens it covers, where the
    # provider returned them (None: not returned, or journaled before they were recorded).
    mean_logprob: float | None = None
    logprob_tokens: int | None = None

    def _row(self) -> tuple[Any, ...]:
        data = self.model_dump()
        data["batch"] = int(self.batch)
        data["request"] = json.dumps(self.request, ensure_ascii=False) if self.request else None
        return tuple(data[c] for c in _COLUMNS)

    @classmethod
    def _from_row(cls, row: sqlite3.Row) -> JournalEntry:
        data = dict(row)
        data["batch"] = bool(data["batch"])
        data["request"] = json.loads(data["request"]) if data["request"] else None
        return cls.model_validate(data)


class Journal:
    """SQLite-backed journal, safe across threads (one connection behind a lock) and
    processes (WAL + busy timeout)."""

    def __init__(self, path: Path | str | None = None) -> None:
        if path is None:
            from tasks.core.paths import journal_path

            path = journal_path()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            self.path, check_same_thread=False, timeout=60.0, isolation_level=None
        )
        self._conn.row_factory = sqlite3.Row
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA busy_timeout=60000")
            self._conn.executescript(_SCHEMA)
            self._migrate()

    def _migrate(self) -> None:
        """Add the columns an older journal file lacks (called under the lock)."""
        have = {row["name"] for row in self._conn.execute("PRAGMA table_info(requests)")}
        for name, kind in _ADDED_COLUMNS:
            if name not in have:
                try:
                    self._conn.execute(f"ALTER TABLE requests ADD COLUMN {name} {kind}")
                except sqlite3.OperationalError as exc:  # another process added it first
                    if "duplicate column" not in str(exc):
                        raise

    # --- reads ---

    def get(self, key: str) -> JournalEntry | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, JournalEntry]:
        wanted = list(dict.fromkeys(keys))
        found: dict[str, JournalEntry] = {}
        with self._lock:
            for i in range(0, len(wanted), _CHUNK):
                chunk = wanted[i : i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT * FROM requests WHERE key IN ({marks})", chunk
                ).fetchall()
                for row in rows:
                    found[row["key"]] = JournalEntry._from_row(row)
        return found

    def entries(self, keys: Sequence[str]) -> list[JournalEntry]:
        """The entries of ``keys`` that exist, in the order of ``keys``."""
        found = self.get_many(keys)
        return [found[k] for k in keys if k in found]

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM requests").fetchone()[0])

    def totals(self, keys: Sequence[str] | None = None) -> dict[str, float]:
        """Token and cost sums, over ``keys`` or the whole journal."""
        rows = self.entries(keys) if keys is not None else self._all()
        return {
            "requests": len(rows),
            "prompt_tokens": sum(e.prompt_tokens for e in rows),
            "completion_tokens": sum(e.completion_tokens for e in rows),
            "cost_usd": sum(e.cost_usd for e in rows),
        }

    def _all(self) -> list[JournalEntry]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM requests").fetchall()
        return [JournalEntry._from_row(r) for r in rows]

    # --- writes ---

    def put(self, entry: JournalEntry) -> None:
        """Record one entry; committed (fsynced) before returning."""
        self.put_many([entry])

    def put_many(self, entries: Sequence[JournalEntry]) -> None:
        """Record entries in one transaction (a group commit); durable before returning.
        An existing key is kept as it is: the first answer paid for wins."""
        if not entries:
            return
        marks = ",".join("?" * len(_COLUMNS))
        sql = f"INSERT OR IGNORE INTO requests ({','.join(_COLUMNS)}) VALUES ({marks})"
        rows = [e._row() for e in entries]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(sql, rows)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class GroupCommitter:
    """Async front of a :class:`Journal` on the event loop: entries that arrive while a
    commit is running are committed together in the next one, so hundreds of answers a
    second cost a few fsyncs, and each ``await put(entry)`` returns only after its own
    entry is durable."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._pending: list[tuple[JournalEntry, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        # One writer thread: commits are serialized anyway, and it keeps the loop free.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="winnow-journal")
        self.commits = 0

    async def put(self, entry: JournalEntry) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((entry, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await future

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await loop.run_in_executor(
                    self._executor, self.journal.put_many, [e for e, _ in batch]
                )
                self.commits += 1
            except BaseException as exc:  # noqa: BLE001 - handed to every waiter
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(None)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
