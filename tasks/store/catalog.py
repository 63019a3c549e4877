"""The project catalog: one DuckDB file recording runs, stages, rejections, LLM calls and
quality-gate results, from which the funnel and the costs are computed.

DuckDB allows one writer *process* at a time, and while it holds the file no other
process can open it at all, not even read-only. So the catalog never keeps a connection:
every method opens the file, does its work in one batch (Arrow tables, never row by row),
and closes it, retrying for up to ``lock_timeout`` seconds while another process holds
it. Within one process the methods are serialised by a lock, which also keeps a
read-only and a read-write connection from meeting (DuckDB refuses that too).

Records themselves stay in Parquet shards; the catalog holds their paths
(``register_shards``) and, where a recipe wants per-record lineage, their provenance
(``register_records``). Times are stored as naive UTC ``TIMESTAMP``s.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel

from tasks.core.paths import catalog_path
from tasks.core.records import Rejection, as_plain_dict
from tasks.store import fsio
from tasks.store.shards import ShardInfo

SCHEMA_VERSION = 2
# Columns added since a catalog may have been made: a catalog made by an earlier version
# gets them (empty for its old rows) the first time it is opened for writing.
_MIGRATIONS = "ALTER TABLE llm_calls ADD COLUMN IF NOT EXISTS attempts BIGINT;"

_DDL = """
CREATE TABLE IF NOT EXISTS catalog_meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    recipe VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    params JSON,
    model VARCHAR,
    provider VARCHAR,
    round INTEGER DEFAULT 0,
    out_dir VARCHAR,
    flow_run_id VARCHAR,
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    error VARCHAR,
    summary JSON
);
CREATE TABLE IF NOT EXISTS stages (
    run_id VARCHAR NOT NULL,
    stage VARCHAR NOT NULL,
    seq INTEGER NOT NULL,
    n_in BIGINT NOT NULL,
    n_out BIGINT NOT NULL,
    n_rejected BIGINT NOT NULL,
    shards JSON,
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    PRIMARY KEY (run_id, stage)
);
CREATE TABLE IF NOT EXISTS shards (
    run_id VARCHAR NOT NULL,
    stage VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    path VARCHAR NOT NULL,
    rows BIGINT NOT NULL,
    fingerprint VARCHAR,
    registered_at TIMESTAMP,
    PRIMARY KEY (run_id, stage, kind, path)
);
CREATE TABLE IF NOT EXISTS records (
    run_id VARCHAR NOT NULL,
    stage VARCHAR NOT NULL,
    record_id VARCHAR NOT NULL,
    parent_id VARCHAR,
    provenance JSON
);
CREATE TABLE IF NOT EXISTS rejections (
    run_id VARCHAR NOT NULL,
    stage VARCHAR NOT NULL,
    record_id VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    detail JSON,
    record JSON,
    created_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS llm_calls (
    run_id VARCHAR NOT NULL,
    stage VARCHAR NOT NULL,
    key VARCHAR NOT NULL,
    provider VARCHAR,
    model VARCHAR,
    template VARCHAR,
    template_version VARCHAR,
    prompt_tokens BIGINT,
    completion_tokens BIGINT,
    cost_usd DOUBLE,
    latency_s DOUBLE,
    cached BOOLEAN,
    error VARCHAR,
    created_at TIMESTAMP,
    attempts BIGINT,
    PRIMARY KEY (run_id, stage, key)
);
CREATE TABLE IF NOT EXISTS validations (
    run_id VARCHAR NOT NULL,
    stage VARCHAR NOT NULL,
    suite VARCHAR NOT NULL,
    severity VARCHAR NOT NULL,
    success BOOLEAN NOT NULL,
    n_expectations INTEGER,
    n_failed INTEGER,
    details JSON,
    duration_s DOUBLE,
    created_at TIMESTAMP
);
"""

# One lock per process: serialises this process's connections (see module docstring).
_PROCESS_LOCK = threading.RLock()


class ShardLike(Protocol):
    """A written shard: ``ShardInfo`` here, ``ShardRef`` in ``tasks.pipeline.stage``."""

    @property
    def path(self) -> str | Path: ...
    @property
    def rows(self) -> int: ...
    @property
    def fingerprint(self) -> str: ...


class CatalogError(RuntimeError):
    pass


class CatalogLocked(CatalogError):
    """Another process kept the catalog file for longer than ``lock_timeout``."""


class RunNotFound(CatalogError, KeyError):
    pass


class AmbiguousRunId(CatalogError, KeyError):
    pass


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _json(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return json.dumps(value, ensure_ascii=False, default=str)


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text or "conflicting" in text


class Catalog:
    """The project's run catalog. Cheap to construct; holds no open connection."""

    def __init__(self, path: str | Path | None = None, lock_timeout: float = 30.0) -> None:
        self.path = Path(path) if path is not None else catalog_path()
        self.lock_timeout = lock_timeout
        self._schema_ready = False

    # ------------------------------------------------------------------ connections

    @contextmanager
    def _connect(self, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        with _PROCESS_LOCK:
            if not read_only:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            deadline = time.monotonic() + self.lock_timeout
            delay = 0.01
            while True:
                try:
                    con = duckdb.connect(str(self.path), read_only=read_only)
                    break
                except duckdb.IOException as exc:
                    if not _is_lock_error(exc):
                        raise
                    if time.monotonic() >= deadline:
                        raise CatalogLocked(
                            f"catalog {self.path} stayed locked by another process for "
                            f"{self.lock_timeout:.0f} s: {exc}"
                        ) from exc
                    time.sleep(delay)
                    delay = min(delay * 2, 0.2)
            try:
                if not read_only and not self._schema_ready:
                    con.execute(_DDL)
                    con.execute(_MIGRATIONS)
                    con.execute(
                        "INSERT OR REPLACE INTO catalog_meta VALUES ('schema_version', ?)",
                        [str(SCHEMA_VERSION)],
                    )
                    self._schema_ready = True
                yield con
            finally:
                con.close()

    @contextmanager
    def _reader(self) -> Iterator[duckdb.DuckDBPyConnection | None]:
        """A read-only connection, or ``None`` when there is no catalog yet."""
        if not self.path.exists():
            yield None
            return
        with self._connect(read_only=True) as con:
            yield con

    def _insert(
        self,
        con: duckdb.DuckDBPyConnection,
        table: str,
        batch: pa.Table,
        on_conflict: str = "",
    ) -> None:
        con.register("_batch", batch)
        try:
            cols = ", ".join(batch.column_names)
            con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _batch {on_conflict}")
        finally:
            con.unregister("_batch")

    @staticmethod
    def _resolve(con: duckdb.DuckDBPyConnection | None, run_id: str) -> str:
        if con is None:
            raise RunNotFound(f"no run {run_id!r}: the catalog is empty")
        exact = con.execute("SELECT run_id FROM runs WHERE run_id = ?", [run_id]).fetchall()
        if exact:
            return run_id
        found = con.execute(
            "SELECT run_id FROM runs WHERE starts_with(run_id, ?) ORDER BY run_id LIMIT 6",
            [run_id],
        ).fetchall()
        if not found:
            raise RunNotFound(f"no run {run_id!r}")
        if len(found) > 1:
            ids = ", ".join(r[0] for r in found[:5])
            raise AmbiguousRunId(f"run id prefix {run_id!r} matches several runs: {ids}")
        return found[0][0]

    @staticmethod
    def _dicts(cursor: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
        names = [d[0] for d in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    # ------------------------------------------------------------------ writes: runs

    def start_run(
        self,
        run_id: str,
        recipe: str,
        params: Mapping[str, Any] | BaseModel | None = None,
        *,
        model: str = "",
        provider: str = "",
        round: int = 0,
        out_dir: str | Path | None = None,
        flow_run_id: str | None = None,
        started_at: datetime | None = None,
    ) -> None:
        """Record a run as ``running``. Starting an existing run id again (a resume) sets
        it back to running and keeps its stages, rejections and calls."""
        with self._connect(read_only=False) as con:
            con.execute(
                """
                INSERT INTO runs (run_id, recipe, status, params, model, provider, round,
                                  out_dir, flow_run_id, started_at)
                VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (run_id) DO UPDATE SET
                    status = 'running', params = excluded.params, model = excluded.model,
                    provider = excluded.provider, round = excluded.round,
                    out_dir = excluded.out_dir,
                    flow_run_id = coalesce(excluded.flow_run_id, runs.flow_run_id),
                    finished_at = NULL, error = NULL
                """,
                [
                    run_id,
                    recipe,
                    _json(params or {}),
                    model,
                    provider,
                    round,
                    None if out_dir is None else str(out_dir),
                    flow_run_id,
                    _naive_utc(started_at) or _now(),
                ],
            )

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set some columns of a run (``flow_run_id``, ``out_dir``, ``model``...)."""
        allowed = {"flow_run_id", "out_dir", "model", "provider", "round", "status", "params"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"can't update run fields {sorted(unknown)}")
        if not fields:
            return
        values = [
            _json(v) if k == "params" else (str(v) if isinstance(v, Path) else v)
            for k, v in fields.items()
        ]
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._connect(read_only=False) as con:
            con.execute(f"UPDATE runs SET {sets} WHERE run_id = ?", [*values, run_id])

    def finish_run(
        self,
        run_id: str,
        status: str,
        *,
        error: str | None = None,
        summary: Mapping[str, Any] | None = None,
        out_dir: str | Path | None = None,
        finished_at: datetime | None = None,
    ) -> None:
        """Close a run with a final status (``completed``, ``failed``, ``gate_failed``...)."""
        with self._connect(read_only=False) as con:
            updated = con.execute(
                """
                UPDATE runs SET status = ?, error = ?, summary = ?,
                    out_dir = coalesce(?, out_dir), finished_at = ?
                WHERE run_id = ? RETURNING run_id
                """,
                [
                    status,
                    error,
                    _json(summary),
                    None if out_dir is None else str(out_dir),
                    _naive_utc(finished_at) or _now(),
                    run_id,
                ],
            ).fetchall()
        if not updated:
            raise RunNotFound(f"no run {run_id!r} to finish")

    # ------------------------------------------------------------------ writes: stages

    def record_stage(
        self,
        run_id: str,
        stage: str,
        *,
        n_in: int,
        n_out: int,
        n_rejected: int,
        shards: Sequence[str | Path | ShardLike] = (),
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
    ) -> None:
        """Record (or, on a resumed run, overwrite) a stage's counts.

        Stages keep the order in which they were first recorded; that is the funnel's
        order. Shards given as objects with ``path``, ``rows`` and ``fingerprint``
        (``ShardInfo``, ``tasks.pipeline.stage.ShardRef``) are also registered as the stage's kept
        shards (``stage_shards``); plain paths are only listed on the stage row.
        """
        paths = [str(s) if isinstance(s, str | Path) else str(s.path) for s in shards]
        with self._connect(read_only=False) as con:
            con.execute(
                """
                INSERT INTO stages (run_id, stage, seq, n_in, n_out, n_rejected, shards,
                                    started_at, finished_at)
                VALUES (?, ?, (SELECT coalesce(max(seq), -1) + 1 FROM stages WHERE run_id = ?),
                        ?, ?, ?, ?, ?, ?)
                ON CONFLICT (run_id, stage) DO UPDATE SET
                    n_in = excluded.n_in, n_out = excluded.n_out,
                    n_rejected = excluded.n_rejected, shards = excluded.shards,
                    started_at = excluded.started_at, finished_at = excluded.finished_at
                """,
                [
                    run_id,
                    stage,
                    run_id,
                    n_in,
                    n_out,
                    n_rejected,
                    json.dumps(paths),
                    _naive_utc(started_at),
                    _naive_utc(finished_at) or _now(),
                ],
            )
            infos = [s for s in shards if not isinstance(s, str | Path)]
            if infos:
                self._register_shards(con, run_id, stage, infos, "kept")

    def register_shards(
        self, run_id: str, stage: str, shards: Iterable[ShardLike], kind: str = "kept"
    ) -> int:
        """Remember where a stage's shards are (``kind``: ``kept``, ``rejected``...)."""
        shards = list(shards)
        if not shards:
            return 0
        with self._connect(read_only=False) as con:
            self._register_shards(con, run_id, stage, shards, kind)
        return len(shards)

    def _register_shards(
        self,
        con: duckdb.DuckDBPyConnection,
        run_id: str,
        stage: str,
        shards: Sequence[ShardLike],
        kind: str,
    ) -> None:
        unique = {str(s.path): s for s in shards}
        now = _now()
        batch = pa.table(
            {
                "run_id": [run_id] * len(unique),
                "stage": [stage] * len(unique),
                "kind": [kind] * len(unique),
                "path": list(unique),
                "rows": [s.rows for s in unique.values()],
                "fingerprint": [s.fingerprint for s in unique.values()],
                "registered_at": [now] * len(unique),
            }
        )
        self._insert(
            con,
            "shards",
            batch,
            "ON CONFLICT (run_id, stage, kind, path) DO UPDATE SET rows = excluded.rows, "
            "fingerprint = excluded.fingerprint, registered_at = excluded.registered_at",
        )

    def register_records(
        self, run_id: str, stage: str, records: Iterable[Mapping[str, Any] | BaseModel]
    ) -> int:
        """Store per-record lineage: ``record_id``, optional ``parent_id`` and
        ``provenance`` (a ``Provenance`` or dict) of each kept record. Registering the same
        record ids of a stage again replaces them, so a resumed stage doesn't double up."""
        rows = [as_plain_dict(r) for r in records]
        if not rows:
            return 0
        missing = [i for i, r in enumerate(rows) if not r.get("record_id")]
        if missing:
            raise ValueError(f"records without a record_id at positions {missing[:5]}")
        batch = pa.table(
            {
                "run_id": [run_id] * len(rows),
                "stage": [stage] * len(rows),
                "record_id": [str(r["record_id"]) for r in rows],
                "parent_id": [r.get("parent_id") for r in rows],
                "provenance": [_json(r.get("provenance")) for r in rows],
            },
            schema=pa.schema(
                [(n, pa.string()) for n in ("run_id", "stage", "record_id", "parent_id")]
                + [("provenance", pa.string())]
            ),
        )
        with self._connect(read_only=False) as con:
            con.register("_ids", batch.select(["record_id"]))
            try:
                con.execute(
                    "DELETE FROM records WHERE run_id = ? AND stage = ? "
                    "AND record_id IN (SELECT record_id FROM _ids)",
                    [run_id, stage],
                )
            finally:
                con.unregister("_ids")
            self._insert(con, "records", batch)
        return len(rows)

    def add_rejections(self, run_id: str, rows: Iterable[Rejection | Mapping[str, Any]]) -> int:
        """Store rejections in one batch. Each needs ``stage``, ``record_id``, ``reason``.

        A record rejected again at the same stage (a resumed shard) replaces its earlier
        rejection instead of being counted twice. Rows without a ``record_id`` are always
        added: they can't be matched, and dropping a rejection would lose a record silently.
        """
        items = []
        for row in rows:
            data = (
                row if isinstance(row, Rejection) else Rejection(**{**dict(row), "run_id": run_id})
            )
            items.append(data)
        if not items:
            return 0
        batch = pa.table(
            {
                "run_id": [run_id] * len(items),
                "stage": [r.stage for r in items],
                "record_id": [r.record_id for r in items],
                "reason": [r.reason for r in items],
                "detail": [_json(r.detail) for r in items],
                "record": [_json(r.record) for r in items],
                "created_at": [_naive_utc(r.at) for r in items],
            },
            schema=pa.schema(
                [(n, pa.string()) for n in ("run_id", "stage", "record_id", "reason")]
                + [
                    ("detail", pa.string()),
                    ("record", pa.string()),
                    ("created_at", pa.timestamp("us")),
                ]
            ),
        )
        with self._connect(read_only=False) as con:
            keys = batch.select(["stage", "record_id"]).filter(pc.not_equal(batch["record_id"], ""))
            con.register("_keys", keys)
            try:
                con.execute(
                    "DELETE FROM rejections WHERE run_id = ? AND (stage, record_id) IN "
                    "(SELECT (stage, record_id) FROM _keys)",
                    [run_id],
                )
            finally:
                con.unregister("_keys")
            self._insert(con, "rejections", batch)
        return len(items)

    def add_llm_calls(
        self,
        run_id: str,
        rows: Iterable[Mapping[str, Any] | BaseModel],
        *,
        stage: str | None = None,
    ) -> int:
        """Store LLM calls (dicts or ``ChatResult``-like models) in one batch.

        Token counts may sit at the top level or in a ``usage`` dict. A call is keyed by
        (run, stage, journal ``key``): the first record of a key wins, so a replayed task
        whose requests the journal answers doesn't count them, or their cost, twice.
        """
        seen: dict[tuple[str, str], dict[str, Any]] = {}
        for raw in rows:
            row = as_plain_dict(raw)
            usage = row.get("usage") or {}
            row_stage = row.get("stage") or stage
            if not row_stage:
                raise ValueError("an LLM call needs a stage (in the row or as stage=)")
            if not row.get("key"):
                raise ValueError("an LLM call needs its journal key")
            seen.setdefault(
                (row_stage, row["key"]),
                {
                    "stage": row_stage,
                    "key": row["key"],
                    "provider": row.get("provider") or "",
                    "model": row.get("model") or "",
                    "template": row.get("template") or "",
                    "template_version": row.get("template_version") or "",
                    "prompt_tokens": int(row.get("prompt_tokens", usage.get("prompt_tokens", 0))),
                    "completion_tokens": int(
                        row.get("completion_tokens", usage.get("completion_tokens", 0))
                    ),
                    "cost_usd": float(row.get("cost_usd") or 0.0),
                    "latency_s": float(row.get("latency_s") or 0.0),
                    "cached": bool(row.get("cached", False)),
                    "error": row.get("error") or None,  # "" means no error too
                    "attempts": int(row.get("attempts") or 0),
                },
            )
        if not seen:
            return 0
        calls = list(seen.values())
        columns = {name: [c[name] for c in calls] for name in calls[0]}
        n = len(calls)
        batch = pa.table(
            {"run_id": [run_id] * n, **columns, "created_at": [_now()] * n},
            schema=pa.schema(
                [(name, pa.string()) for name in ("run_id", "stage", "key", "provider", "model")]
                + [("template", pa.string()), ("template_version", pa.string())]
                + [("prompt_tokens", pa.int64()), ("completion_tokens", pa.int64())]
                + [("cost_usd", pa.float64()), ("latency_s", pa.float64())]
                + [
                    ("cached", pa.bool_()),
                    ("error", pa.string()),
                    ("attempts", pa.int64()),
                    ("created_at", pa.timestamp("us")),
                ]
            ),
        )
        with self._connect(read_only=False) as con:
            self._insert(con, "llm_calls", batch, "ON CONFLICT DO NOTHING")
        return n

    def add_validation(
        self, run_id: str, stage: str, result: BaseModel | Mapping[str, Any]
    ) -> None:
        """Store one quality-gate result (a ``GateResult`` or a dict with its fields)."""
        data = as_plain_dict(result)
        details = data.get("failures", data.get("details"))
        with self._connect(read_only=False) as con:
            con.execute(
                "INSERT INTO validations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    run_id,
                    stage,
                    data["suite"],
                    data["severity"],
                    bool(data["success"]),
                    data.get("n_expectations"),
                    data.get("n_failed"),
                    _json(details),
                    data.get("duration_s"),
                    _now(),
                ],
            )

    # ------------------------------------------------------------------ reads

    def runs(self, limit: int = 20, recipe: str | None = None) -> list[dict[str, Any]]:
        """The latest runs, newest first, each with ``n_kept`` (the last stage's output,
        ``None`` before any stage) and ``cost_usd`` (its LLM calls)."""
        with self._reader() as con:
            if con is None:
                return []
            where, args = ("WHERE r.recipe = ?", [recipe]) if recipe else ("", [])
            cur = con.execute(
                f"""
                SELECT r.*,
                    (SELECT n_out FROM stages s WHERE s.run_id = r.run_id
                     ORDER BY seq DESC LIMIT 1) AS n_kept,
                    (SELECT coalesce(sum(cost_usd), 0.0) FROM llm_calls c
                     WHERE c.run_id = r.run_id) AS cost_usd
                FROM runs r {where}
                ORDER BY r.started_at DESC, r.run_id LIMIT ?
                """,
                [*args, limit],
            )
            return [self._decode_run(r) for r in self._dicts(cur)]

    @staticmethod
    def _decode_run(row: dict[str, Any]) -> dict[str, Any]:
        row["params"] = _loads(row.get("params")) or {}
        row["summary"] = _loads(row.get("summary"))
        return row

    def resolve_run_id(self, run_id: str) -> str:
        """The full id of the run that ``run_id`` names or uniquely prefixes."""
        with self._reader() as con:
            return self._resolve(con, run_id)

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        """One run by its id or a unique prefix of it; ``None`` if there is none.

        Raises ``AmbiguousRunId`` when the prefix matches several runs.
        """
        with self._reader() as con:
            try:
                full = self._resolve(con, run_id)
            except RunNotFound:
                return None
            assert con is not None
            cur = con.execute("SELECT * FROM runs WHERE run_id = ?", [full])
            return self._decode_run(self._dicts(cur)[0])

    def funnel(self, run_id: str) -> list[dict[str, Any]]:
        """Each stage's counts, in stage order.

        Besides ``n_in``/``n_out``/``n_rejected`` (as the stage reported them):
        ``n_rejections_recorded`` (rows in the rejections table) and ``n_unaccounted``
        (``n_in - n_out - n_rejected``), which is nonzero when records were lost silently.
        """
        with self._reader() as con:
            full = self._resolve(con, run_id)
            assert con is not None
            cur = con.execute(
                """
                SELECT s.stage, s.n_in, s.n_out, s.n_rejected,
                       coalesce(r.n, 0) AS n_rejections_recorded,
                       s.n_in - s.n_out - s.n_rejected AS n_unaccounted,
                       s.started_at, s.finished_at
                FROM stages s
                LEFT JOIN (SELECT stage, count(*) AS n FROM rejections WHERE run_id = ?
                           GROUP BY stage) r USING (stage)
                WHERE s.run_id = ?
                ORDER BY s.seq
                """,
                [full, full],
            )
            return self._dicts(cur)

    def costs(self, run_id: str) -> dict[str, Any]:
        """Calls, tokens and dollars of a run, in total, by stage and by model, and per
        record kept by the last stage."""
        with self._reader() as con:
            full = self._resolve(con, run_id)
            assert con is not None
            agg = """count(*) AS calls,
                     count(*) FILTER (WHERE cached) AS cached_calls,
                     coalesce(sum(attempts), 0)::BIGINT AS sends,
                     count(*) FILTER (WHERE error IS NOT NULL) AS failed_calls,
                     coalesce(sum(prompt_tokens), 0)::BIGINT AS prompt_tokens,
                     coalesce(sum(completion_tokens), 0)::BIGINT AS completion_tokens,
                     coalesce(sum(cost_usd), 0.0) AS cost_usd"""
            total = self._dicts(
                con.execute(f"SELECT {agg} FROM llm_calls WHERE run_id = ?", [full])
            )[0]
            by_stage = self._dicts(
                con.execute(
                    f"""SELECT stage, {agg} FROM llm_calls WHERE run_id = ?
                        GROUP BY stage ORDER BY min(created_at), stage""",
                    [full],
                )
            )
            by_model = self._dicts(
                con.execute(
                    f"""SELECT provider, model, {agg} FROM llm_calls WHERE run_id = ?
                        GROUP BY provider, model ORDER BY cost_usd DESC, provider, model""",
                    [full],
                )
            )
            last = con.execute(
                "SELECT n_out FROM stages WHERE run_id = ? ORDER BY seq DESC LIMIT 1", [full]
            ).fetchone()
        kept = last[0] if last else None
        return {
            "run_id": full,
            **total,
            "kept": kept,
            "cost_per_kept_usd": (total["cost_usd"] / kept) if kept else None,
            "by_stage": by_stage,
            "by_model": by_model,
        }

    def llm_usage(self, run_id: str) -> list[dict[str, Any]]:
        """Which model answered which prompt (template and version) in each stage: calls,
        tokens, cost and mean latency of each, in stage order (for the report and card)."""
        with self._reader() as con:
            full = self._resolve(con, run_id)
            assert con is not None
            return self._dicts(
                con.execute(
                    """
                    SELECT c.stage, c.provider, c.model, c.template, c.template_version,
                           count(*) AS calls,
                           count(*) FILTER (WHERE c.cached) AS cached_calls,
                           coalesce(sum(c.prompt_tokens), 0)::BIGINT AS prompt_tokens,
                           coalesce(sum(c.completion_tokens), 0)::BIGINT AS completion_tokens,
                           coalesce(sum(c.cost_usd), 0.0) AS cost_usd,
                           avg(c.latency_s) FILTER (WHERE NOT c.cached) AS mean_latency_s
                    FROM llm_calls c LEFT JOIN stages s USING (run_id, stage)
                    WHERE c.run_id = ?
                    GROUP BY c.stage, c.provider, c.model, c.template, c.template_version
                    ORDER BY min(s.seq), c.stage, c.provider, c.model, c.template
                    """,
                    [full],
                )
            )

    def rejection_reasons(
        self, run_id: str, limit: int = 10, stage: str | None = None
    ) -> list[dict[str, Any]]:
        """The most frequent (stage, reason) pairs with their counts, one example each."""
        with self._reader() as con:
            full = self._resolve(con, run_id)
            assert con is not None
            where, args = ("AND stage = ?", [stage]) if stage else ("", [])
            cur = con.execute(
                f"""SELECT stage, reason, count(*) AS count,
                           min(record_id) AS example_record_id
                    FROM rejections WHERE run_id = ? {where}
                    GROUP BY stage, reason ORDER BY count DESC, stage, reason LIMIT ?""",
                [full, *args, limit],
            )
            return self._dicts(cur)

    def rejections(
        self,
        run_id: str,
        stage: str | None = None,
        reason: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Rejected records with their reason and decoded detail/record."""
        with self._reader() as con:
            full = self._resolve(con, run_id)
            assert con is not None
            clauses, args = ["run_id = ?"], [full]
            if stage:
                clauses.append("stage = ?")
                args.append(stage)
            if reason:
                clauses.append("reason = ?")
                args.append(reason)
            cur = con.execute(
                f"SELECT * FROM rejections WHERE {' AND '.join(clauses)} "
                "ORDER BY created_at, stage, record_id LIMIT ?",
                [*args, limit],
            )
            rows = self._dicts(cur)
        for row in rows:
            row["detail"] = _loads(row["detail"])
            row["record"] = _loads(row["record"])
        return rows

    def validations(self, run_id: str) -> list[dict[str, Any]]:
        """Quality-gate results of a run, oldest first."""
        with self._reader() as con:
            full = self._resolve(con, run_id)
            assert con is not None
            rows = self._dicts(
                con.execute(
                    "SELECT * FROM validations WHERE run_id = ? ORDER BY created_at", [full]
                )
            )
        for row in rows:
            row["details"] = _loads(row["details"])
        return rows

    def stage_shards(self, run_id: str, stage: str, kind: str = "kept") -> list[ShardInfo]:
        """A stage's registered shards, in path order (feed them to ``read_frame``)."""
        with self._reader() as con:
            full = self._resolve(con, run_id)
            assert con is not None
            rows = con.execute(
                "SELECT path, rows, fingerprint FROM shards "
                "WHERE run_id = ? AND stage = ? AND kind = ? ORDER BY path",
                [full, stage, kind],
            ).fetchall()
        return [
            ShardInfo(path=p if fsio.is_remote(p) else Path(p), rows=n, fingerprint=f or "")
            for p, n, f in rows
        ]

    def record_lineage(self, run_id: str, record_id: str) -> list[dict[str, Any]]:
        """Every stage's registration of one record, with its provenance."""
        with self._reader() as con:
            full = self._resolve(con, run_id)
            assert con is not None
            rows = self._dicts(
                con.execute(
                    "SELECT r.stage, r.record_id, r.parent_id, r.provenance FROM records r "
                    "LEFT JOIN stages s USING (run_id, stage) "
                    "WHERE r.run_id = ? AND r.record_id = ? ORDER BY s.seq",
                    [full, record_id],
                )
            )
        for row in rows:
            row["provenance"] = _loads(row["provenance"])
        return rows

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """Run a read-only SQL query against the catalog (for ``winnow runs`` and notebooks)."""
        with self._reader() as con:
            if con is None:
                return []
            return self._dicts(con.execute(sql, list(params or [])))
