"""Stages: plain functions over a batch of records, run shard by shard as Prefect tasks.

A stage function takes the rows of one shard, its configuration (a pydantic model) and a
small context, and returns the rows it keeps, the rows it rejects (each with a reason)
and the LLM calls it made. It knows nothing of Prefect, so it is tested on plain lists.

``run_stage`` maps a stage over shards. Each shard's output lands in a directory named by
a key over (stage, stage version, stage source, configuration, input fingerprint), with a
completion marker written last. A re-run, a retry or a resumed run finds the marker and
reuses the output; a killed run leaves no marker and the shard is redone (the request
journal still answers every LLM call that had finished).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import socket
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pydantic import BaseModel, Field

from tasks import progress
from tasks.killpoints import kill_point
from tasks.llm.base import ChatResult
from tasks.store import fsio
from tasks.store.shards import iter_shards, read_shard, write_shard
from winnow.paths import Location, shard_root


class ShardRef(BaseModel):
    path: str
    rows: int
    fingerprint: str


class RunInfo(BaseModel):
    """Who is running: recorded in provenance, never part of a cache key."""

    run_id: str
    recipe: str
    round: int = 0


class StageContext(BaseModel):
    run: RunInfo
    stage: str
    # False on Dask/Ray workers: the flow's process counts whole shards as they finish.
    report: bool = True

    def progress(self, n: int = 1) -> None:
        if self.report:
            progress.current().advance(self.stage, n)


class StageResult(BaseModel):
    """What a stage function returns for one batch."""

    kept: list[dict[str, Any]] = Field(default_factory=list)
    rejected: list[dict[str, Any]] = Field(default_factory=list)
    calls: list[dict[str, Any]] = Field(default_factory=list)
    # Units that went in, when not one per input row: a stage drawing N candidates per
    # problem takes N units per row, so in = kept + rejected still holds.
    n_in: int | None = None

    def reject(
        self,
        record: dict[str, Any],
        stage: str,
        reason: str,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self.rejected.append(
            {
                "record_id": str(record.get("id", "")),
                "stage": stage,
                "reason": reason,
                "detail": detail or {},
                "record": record,
            }
        )

    def add_calls(
        self, results: Iterable[ChatResult], template: str = "", version: str = ""
    ) -> None:
        for r in results:
            self.calls.append(call_row(r, template, version))


def call_row(result: ChatResult, template: str = "", version: str = "") -> dict[str, Any]:
    return {
        "key": result.key,
        "provider": result.provider,
        "model": result.model,
        "template": template,
        "template_version": version,
        "prompt_tokens": result.usage.prompt_tokens,
        "completion_tokens": result.usage.completion_tokens,
        "cost_usd": result.cost_usd,
        "latency_s": result.latency_s,
        "cached": result.cached,
        "error": result.error or "",
    }


StageFn = Callable[[list[dict[str, Any]], Any, StageContext], StageResult]


@dataclass(frozen=True)
class Stage:
    """A named stage function. Bump ``version`` when its behaviour changes in a way its
    source does not show (e.g. a prompt file it reads)."""

    name: str
    fn: StageFn
    version: str = "1"

    @cached_property
    def source_hash(self) -> str:
        module = sys.modules.get(self.fn.__module__)
        try:
            source = inspect.getsource(module) if module else inspect.getsource(self.fn)
        except (OSError, TypeError):
            source = self.fn.__qualname__
        return hashlib.sha256(source.encode()).hexdigest()[:16]


class ShardOutput(BaseModel):
    stage: str
    key: str
    input: ShardRef
    kept: ShardRef
    rejected: ShardRef
    calls: ShardRef
    # False when some request failed for good: the next run redoes the shard (the journal
    # answers every request that had succeeded, so only the failures are sent again).
    complete: bool = True
    reused: bool = False
    n_in: int | None = None
    worker: str = ""  # host:pid of the process that made the shard

    @property
    def units_in(self) -> int:
        return self.input.rows if self.n_in is None else self.n_in


class StageOutput(BaseModel):
    stage: str
    shards: list[ShardOutput]

    @property
    def kept(self) -> list[ShardRef]:
        return [s.kept for s in self.shards]

    @property
    def rejected(self) -> list[ShardRef]:
        return [s.rejected for s in self.shards]

    @property
    def n_in(self) -> int:
        return sum(s.units_in for s in self.shards)

    @property
    def n_kept(self) -> int:
        return sum(s.kept.rows for s in self.shards)

    @property
    def n_rejected(self) -> int:
        return sum(s.rejected.rows for s in self.shards)

    @property
    def reused(self) -> bool:
        return bool(self.shards) and all(s.reused for s in self.shards)

    def kept_rows(self, columns: list[str] | None = None) -> Iterator[dict[str, Any]]:
        return iter_shards([s.path for s in self.kept], columns=columns)

    def rejected_rows(self) -> Iterator[dict[str, Any]]:
        return iter_shards([s.path for s in self.rejected])


# --- keys and shards ----------------------------------------------------------------------


def canonical_json(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def fingerprint_rows(rows: Iterable[dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for row in rows:
        h.update(canonical_json(row).encode())
        h.update(b"\n")
    return h.hexdigest()


def shard_key(stage: Stage, config: Any, shard: ShardRef) -> str:
    blob = canonical_json(
        {
            "stage": stage.name,
            "version": stage.version,
            "source": stage.source_hash,
            "config": config,
            "input": shard.fingerprint,
        }
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _write(rows: list[dict[str, Any]], path: str) -> ShardRef:
    info = write_shard(rows, path)
    return ShardRef(path=str(path), rows=len(rows), fingerprint=info.fingerprint)


def _write_marker(marker: str, output: BaseModel) -> None:
    """The completion marker, written last and whole: its presence means "done"."""
    fsio.write_text(marker, output.model_dump_json())


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def write_input_shards(
    rows: Iterable[dict[str, Any]], shard_size: int, name: str
) -> list[ShardRef]:
    """Split a stream of rows into content-addressed Parquet shards (memory: one shard)."""
    directory = fsio.join(shard_root(), "inputs", name)
    fsio.makedirs(directory)
    refs: list[ShardRef] = []
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        fp = fingerprint_rows(batch)
        path = fsio.join(directory, f"{fp[:32]}.parquet")
        if not fsio.exists(path):
            write_shard(batch, path)
        refs.append(ShardRef(path=path, rows=len(batch), fingerprint=fp))

    for row in rows:
        batch.append(row)
        if len(batch) >= shard_size:
            flush()
            batch = []
    if batch:
        flush()
    return refs


# --- running ------------------------------------------------------------------------------


def run_shard(
    stage: Stage, shard: ShardRef, config: Any, run: RunInfo, report: bool = True
) -> ShardOutput:
    """Run one stage over one shard, or reuse the output a previous attempt finished.

    Everything it needs comes in its arguments and the active :class:`Location`, so it
    runs the same in a thread of the flow's process or on a Dask or Ray worker."""
    key = shard_key(stage, config, shard)
    directory = fsio.join(shard_root(), "shards", stage.name, key)
    marker = fsio.join(directory, "_DONE.json")
    if fsio.exists(marker):
        done = ShardOutput.model_validate_json(fsio.read_text(marker))
        if done.complete:
            if report:
                progress.current().advance(stage.name, shard.rows)
            return done.model_copy(update={"reused": True})

    rows = read_shard(shard.path)
    result = stage.fn(rows, config, StageContext(run=run, stage=stage.name, report=report))
    kill_point(f"shard.{stage.name}")
    fsio.makedirs(directory)
    output = ShardOutput(
        stage=stage.name,
        key=key,
        input=shard,
        kept=_write(result.kept, fsio.join(directory, "kept.parquet")),
        rejected=_write(result.rejected, fsio.join(directory, "rejected.parquet")),
        calls=_write(result.calls, fsio.join(directory, "calls.parquet")),
        complete=not any(c.get("error") for c in result.calls),
        n_in=result.n_in,
        worker=worker_name(),
    )
    _write_marker(marker, output)
    return output


def _worth_retrying(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a failed shard, unless its LLM endpoint is known to be down: the client
    already waited ``max_outage_s`` for it, so the run stops now with that error."""
    from tasks.llm.base import EndpointDown

    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001 - no result to look at: retry as usual
        return True
    return not isinstance(exc, EndpointDown)


def _shard_task():
    """The Prefect task around ``run_shard`` (built lazily so plain use needs no Prefect)."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    @task(
        name="stage-shard",
        retries=2,
        retry_delay_seconds=[2, 10],
        retry_condition_fn=_worth_retrying,
        cache_policy=NO_CACHE,
        persist_result=False,
        log_prints=False,
    )
    def stage_shard(
        stage: Stage,
        shard: ShardRef,
        config: Any,
        run: RunInfo,
        location: Location | None = None,
        report: bool = True,
    ) -> ShardOutput:
        if location is None:
            return run_shard(stage, shard, config, run, report)
        with location.active():
            return run_shard(stage, shard, config, run, report)

    return stage_shard


_TASK = None
SHARDS_IN_FLIGHT = 8  # default; WINNOW_SHARDS_IN_FLIGHT overrides


def shards_in_flight() -> int:
    """How many shards of a stage run at once: enough to keep an LLM endpoint's
    concurrency busy with the usual shard sizes, few enough that memory stays flat."""
    try:
        return max(1, int(os.environ.get("WINNOW_SHARDS_IN_FLIGHT", SHARDS_IN_FLIGHT)))
    except ValueError:
        return SHARDS_IN_FLIGHT


def shard_task() -> Any:
    """The Prefect task that runs one shard (one per process)."""
    global _TASK
    if _TASK is None:
        _TASK = _shard_task()
    return _TASK


def run_stage(
    stage: Stage,
    shards: list[ShardRef],
    config: Any,
    run: RunInfo,
    task_runner: Any = None,
    location: Location | None = None,
) -> StageOutput:
    """Map a stage over shards: as Prefect task runs inside a flow, plainly outside one.

    ``task_runner`` (a started Prefect task runner, e.g. Dask or Ray) sends the shards
    there instead of to the flow's own runner; the flow's process then counts progress
    by whole shards, since the workers' counters are out of its reach."""
    from prefect.context import FlowRunContext

    location = location or Location.here()
    reporter = progress.current()
    reporter.start(stage.name, sum(s.rows for s in shards))
    try:
        if FlowRunContext.get() is None:
            with location.active():
                outputs = [run_shard(stage, s, config, run) for s in shards]
        elif task_runner is None:
            # A window of shards in flight, not all of them: each holds its rows, requests
            # and results in memory, so submitting every shard at once (Prefect's thread
            # pool is unbounded) made a run's memory grow with its size.
            outputs = []
            window: deque[Future] = deque()
            for i, s in enumerate(shards):
                if len(window) >= shards_in_flight():
                    outputs.append(window.popleft().result())
                task = shard_task().with_options(task_run_name=f"{stage.name}[{i}]")
                window.append(task.submit(stage, s, config, run, location))
            outputs.extend(f.result() for f in window)
        else:
            outputs = _run_on(task_runner, stage, shards, config, run, location)
    finally:
        reporter.finish(stage.name)
    return StageOutput(stage=stage.name, shards=outputs)


def _run_on(
    task_runner: Any,
    stage: Stage,
    shards: list[ShardRef],
    config: Any,
    run: RunInfo,
    location: Location,
) -> list[ShardOutput]:
    from prefect.futures import as_completed

    reporter = progress.current()
    index = {}
    for i, s in enumerate(shards):
        task = shard_task().with_options(task_run_name=f"{stage.name}[{i}]")
        parameters = {
            "stage": stage,
            "shard": s,
            "config": config,
            "run": run,
            "location": location,
            "report": False,
        }
        index[task_runner.submit(task, parameters=parameters)] = i
    outputs: list[ShardOutput | None] = [None] * len(shards)
    for future in as_completed(list(index)):
        i = index[future]
        outputs[i] = future.result()
        reporter.advance(stage.name, shards[i].rows)
    return [o for o in outputs if o is not None]


# --- whole-dataset steps ------------------------------------------------------------------

GlobalFn = Callable[[Iterator[dict[str, Any]], Any, StageContext], Iterator[tuple[str, dict]]]


@dataclass(frozen=True)
class GlobalStage:
    """A step that needs every row at once (dedup, balance, quantiles). Its function reads a
    stream of rows and yields ``("kept", row)`` or ``("rejected", rejection)``; the runner
    writes them in shards as they come, so memory holds what the function keeps (e.g. a set
    of hashes), not the dataset."""

    name: str
    fn: GlobalFn
    version: str = "1"

    @cached_property
    def source_hash(self) -> str:
        return Stage(self.name, self.fn, self.version).source_hash  # type: ignore[arg-type]


def run_global(
    stage: GlobalStage, shards: list[ShardRef], config: Any, run: RunInfo, shard_size: int = 1000
) -> StageOutput:
    """Run a whole-dataset step once over all shards (cached like ``run_shard``)."""
    combined = ShardRef(
        path="",
        rows=sum(s.rows for s in shards),
        fingerprint=hashlib.sha256("".join(s.fingerprint for s in shards).encode()).hexdigest(),
    )
    key = shard_key(stage, config, combined)  # type: ignore[arg-type]
    directory = fsio.join(shard_root(), "shards", stage.name, key)
    marker = fsio.join(directory, "_DONE.json")
    reporter = progress.current()
    reporter.start(stage.name, combined.rows)
    if fsio.exists(marker):
        reporter.finish(stage.name)
        done = StageOutput.model_validate_json(fsio.read_text(marker))
        return done.model_copy(
            update={"shards": [s.model_copy(update={"reused": True}) for s in done.shards]}
        )

    fsio.makedirs(directory)
    buffers: dict[str, list[dict[str, Any]]] = {"kept": [], "rejected": []}
    written: dict[str, list[ShardRef]] = {"kept": [], "rejected": []}

    def flush(kind: str) -> None:
        rows = buffers[kind]
        name = f"{kind}-{len(written[kind]):05d}.parquet"
        written[kind].append(_write(rows, fsio.join(directory, name)))
        buffers[kind] = []

    def counted(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for row in rows:
            reporter.advance(stage.name)
            yield row

    ctx = StageContext(run=run, stage=stage.name)
    for kind, row in stage.fn(counted(iter_shards([s.path for s in shards])), config, ctx):
        buffers[kind].append(row)
        if len(buffers[kind]) >= shard_size:
            flush(kind)
    for kind in ("kept", "rejected"):
        if buffers[kind] or not written[kind]:
            flush(kind)
    reporter.finish(stage.name)

    # One ShardOutput per written pair, the input counted once, on the first.
    empty = _write([], fsio.join(directory, "calls.parquet"))
    n = max(len(written["kept"]), len(written["rejected"]))
    outputs = []
    for i in range(n):
        kept = written["kept"][i] if i < len(written["kept"]) else _empty_ref(directory, "kept", i)
        rej = (
            written["rejected"][i]
            if i < len(written["rejected"])
            else _empty_ref(directory, "rejected", i)
        )
        source = combined if i == 0 else ShardRef(path="", rows=0, fingerprint="")
        outputs.append(
            ShardOutput(
                stage=stage.name, key=key, input=source, kept=kept, rejected=rej, calls=empty
            )
        )
    output = StageOutput(stage=stage.name, shards=outputs)
    _write_marker(marker, output)
    return output


def _empty_ref(directory: str, kind: str, i: int) -> ShardRef:
    return _write([], fsio.join(directory, f"{kind}-{i:05d}-empty.parquet"))
