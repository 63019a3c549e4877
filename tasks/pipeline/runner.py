"""Running stages over shards: keys, completion markers, windows of task runs.

``run_stage`` maps a stage over shards. Each shard's output lands in a directory named by
a key over (stage, stage version, stage source, configuration, input fingerprint), with a
completion marker written last. A re-run, a retry or a resumed run finds the marker and
reuses the output; a killed run leaves no marker and the shard is redone (the request
journal still answers every LLM call that had finished). ``run_global`` does the same
for a whole-dataset step, once over all shards.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any

from pydantic import BaseModel, ValidationError

from tasks.core import progress
from tasks.core.killpoints import kill_point
from tasks.core.paths import Location, shard_root
from tasks.core.records import canonical_json
from tasks.gates.suites import SuiteSpec
from tasks.gates.validation import check_rows
from tasks.pipeline.stage import (
    GlobalStage,
    RunInfo,
    ShardOutput,
    ShardRef,
    Stage,
    StageContext,
    StageOutput,
)
from tasks.store import fsio
from tasks.store.shards import iter_shards, read_shard, write_shard

log = logging.getLogger("winnow")

# --- keys and shards ----------------------------------------------------------------------


def fingerprint_rows(rows: Iterable[dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for row in rows:
        h.update(canonical_json(row).encode())
        h.update(b"\n")
    return h.hexdigest()


def shard_key(stage: Stage | GlobalStage, config: Any, shard: ShardRef) -> str:
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
    return list(iter_input_shards(rows, shard_size, name))


def iter_input_shards(
    rows: Iterable[dict[str, Any]], shard_size: int, name: str
) -> Iterator[ShardRef]:
    """Each shard as soon as it is written: a stage can start on the first one while the
    rest of a large input is still being read."""
    directory = fsio.join(shard_root(), "inputs", name)
    fsio.makedirs(directory)
    batch: list[dict[str, Any]] = []

    def flush() -> ShardRef:
        fp = fingerprint_rows(batch)
        path = fsio.join(directory, f"{fp[:32]}.parquet")
        if not fsio.exists(path):
            write_shard(batch, path)
        return ShardRef(path=path, rows=len(batch), fingerprint=fp)

    for row in rows:
        batch.append(row)
        if len(batch) >= shard_size:
            yield flush()
            batch = []
    if batch:
        yield flush()


class InputShards:
    """A run's input shards, written as the first stage asks for them, and remembered:
    iterating again (a later stage, a re-run of the stage) reads the list it wrote.
    ``rows`` is the number of input rows when known beforehand (for progress)."""

    def __init__(self, refs: Iterator[ShardRef], rows: int | None = None) -> None:
        self._source: Iterator[ShardRef] | None = refs
        self._refs: list[ShardRef] = []
        self.rows = rows

    def __iter__(self) -> Iterator[ShardRef]:
        yield from list(self._refs)
        while self._source is not None:
            ref = next(self._source, None)
            if ref is None:
                self._source = None
                return
            self._refs.append(ref)
            yield ref

    def __len__(self) -> int:
        return len(self.materialized())

    def materialized(self) -> list[ShardRef]:
        for _ in self:
            pass
        return list(self._refs)


# --- one shard ------------------------------------------------------------------------------


def run_shard(
    stage: Stage, shard: ShardRef, config: Any, run: RunInfo, report: bool = True
) -> ShardOutput:
    """Run one stage over one shard, or reuse the output a previous attempt finished.

    Everything it needs comes in its arguments and the active :class:`Location`, so it
    runs the same in a thread of the flow's process or on a Dask or Ray worker. Progress
    is counted here: whatever rows the stage did not count itself, when it returns."""
    key = shard_key(stage, config, shard)
    directory = fsio.join(shard_root(), "shards", stage.name, key)
    marker = fsio.join(directory, "_DONE.json")
    if fsio.exists(marker):
        done = ShardOutput.model_validate_json(fsio.read_text(marker))
        if done.complete:
            if report:
                progress.current().advance(stage.name, shard.rows)
                progress.kept(stage.name, done.kept.rows)
            return done.model_copy(update={"reused": True})

    rows = read_shard(shard.path)
    ctx = StageContext(run=run, stage=stage.name, report=report)
    began = time.monotonic()
    try:
        result = stage.fn(rows, config, ctx)
    except Exception as exc:
        raise _stage_failed(stage.name, key, shard.rows, exc) from exc
    seconds = time.monotonic() - began
    if report and shard.rows > ctx.counted:
        progress.current().advance(stage.name, shard.rows - ctx.counted)
    if report:
        progress.kept(stage.name, len(result.kept))
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
        seconds=round(seconds, 3),
    )
    _write_marker(marker, output)
    return output


class StageFailed(RuntimeError):
    """A stage's own code raised on a shard: a bug in the recipe (or a building block),
    told in one line that names the stage, the shard and the exception."""


def _stage_failed(stage: str, key: str, rows: int, exc: Exception) -> Exception:
    """``exc`` as one line before any traceback. Errors that already say what to do (an
    endpoint down, a failed gate, a bad input or key) go on as they are; anything else
    becomes a StageFailed, so that a pydantic error in a parse is not taken for a bad
    parameter."""
    from tasks.llm.base import LLMError
    from tasks.llm.batch.jobs import BatchTimeout
    from tasks.pipeline.run_logs import actionable_errors

    said_already = (*actionable_errors(), LLMError, BatchTimeout)
    if isinstance(exc, said_already) and not isinstance(exc, ValidationError):
        return exc
    said = " ".join(str(exc).split())
    line = f"stage {stage!r} failed on shard {key[:12]} ({rows} rows): {type(exc).__name__}: "
    line += said if len(said) <= 400 else said[:400] + " ..."
    log.error("%s", line)
    return StageFailed(line)


def _worth_retrying(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a failed shard, unless its LLM endpoint is known to be down (the client
    already waited ``max_outage_s`` for it) or its rows failed a gate (they would fail
    again): the run stops now with that error."""
    from tasks.gates.gx import GateFailed
    from tasks.llm.base import EndpointDown

    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001 - no result to look at: retry as usual
        return True
    return not isinstance(exc, EndpointDown | GateFailed)


def _with_row_count(shards: Iterable[ShardRef]) -> tuple[Iterable[ShardRef], int]:
    """The shards and their rows in all: streamed inputs know their count (``.rows``),
    anything else is listed once to count it."""
    known = getattr(shards, "rows", None)
    if known is None:
        shards = list(shards)
        known = sum(s.rows for s in shards)
    return shards, known


def _task_options(name: str) -> dict[str, Any]:
    """How every shard task runs: retried twice unless retrying cannot help, never cached
    or persisted by Prefect (stages keep their own content-addressed shards)."""
    from prefect.cache_policies import NO_CACHE

    return {
        "name": name,
        "retries": 2,
        "retry_delay_seconds": [2, 10],
        "retry_condition_fn": _worth_retrying,
        "cache_policy": NO_CACHE,
        "persist_result": False,
        "log_prints": False,
    }


def _shard_task():
    """The Prefect task around ``run_shard`` (built lazily so plain use needs no Prefect)."""
    from prefect import task

    @task(**_task_options("stage-shard"))
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


# --- a stage over its shards -----------------------------------------------------------------


OnShard = Callable[[int, ShardOutput], None]


def run_stage(
    stage: Stage,
    shards: Iterable[ShardRef],
    config: Any,
    run: RunInfo,
    task_runner: Any = None,
    location: Location | None = None,
    on_shard: OnShard | None = None,
) -> StageOutput:
    """Map a stage over shards: as Prefect task runs inside a flow, plainly outside one.

    ``on_shard(index, output)`` is called in this thread as each shard's output comes
    (in order here; as they complete on a cluster), so what follows a shard (its catalog
    rows, a streamed output) happens while the others run, not all after the last.
    ``task_runner`` (a started Prefect task runner, e.g. Dask or Ray) sends the shards
    there instead of to the flow's own runner; the flow's process then counts progress
    by whole shards, since the workers' counters are out of its reach."""
    from prefect.context import FlowRunContext

    location = location or Location.here()
    reporter = progress.current()
    shards, known = _with_row_count(shards)
    reporter.start(stage.name, known)
    done = on_shard or (lambda _i, _o: None)
    outputs: list[ShardOutput] = []

    def collect(output: ShardOutput) -> None:
        done(len(outputs), output)
        outputs.append(output)

    try:
        if FlowRunContext.get() is None:
            with location.active():
                for s in shards:
                    collect(run_shard(stage, s, config, run))
        elif task_runner is None:
            # A window of shards in flight, not all of them: each holds its rows, requests
            # and results in memory, so submitting every shard at once (Prefect's thread
            # pool is unbounded) made a run's memory grow with its size.
            window: deque[Future] = deque()
            for i, s in enumerate(shards):
                if len(window) >= shards_in_flight():
                    collect(window.popleft().result())
                task = shard_task().with_options(task_run_name=f"{stage.name}[{i}]")
                window.append(task.submit(stage, s, config, run, location))
            for future in window:
                collect(future.result())
        else:
            placed: dict[int, ShardOutput] = {}
            for i, output in _run_on(task_runner, stage, list(shards), config, run, location):
                done(i, output)
                placed[i] = output
            outputs = [placed[i] for i in sorted(placed)]
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
) -> Iterator[tuple[int, ShardOutput]]:
    """Each shard's output with its index, as the cluster finishes them."""
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
    for future in as_completed(list(index)):
        i = index[future]
        output = future.result()
        reporter.advance(stage.name, shards[i].rows)
        progress.kept(stage.name, output.kept.rows)
        yield i, output


# --- chained stages ------------------------------------------------------------------------


class Link(BaseModel):
    """One stage of a chain, its config, and the suite (if any) whose row-wise part a
    shard's kept rows must pass before the next stage takes them."""

    model_config = {"arbitrary_types_allowed": True}

    stage: Stage
    config: Any
    check: SuiteSpec | None = None


def run_chain_shard(
    links: list[Link], shard: ShardRef, run: RunInfo, report: bool = True
) -> list[ShardOutput]:
    """One shard through every stage of a chain, one after another: each stage's output
    is cached and resumed on its own, like any shard's."""
    outputs: list[ShardOutput] = []
    current = shard
    for k, link in enumerate(links):
        output = run_shard(link.stage, current, link.config, run, report)
        if link.check is not None and output.kept.rows:
            check_rows([output.kept], link.check)  # a failure stops the run here
        if report and k + 1 < len(links):
            progress.extend(links[k + 1].stage.name, output.kept.rows)
        outputs.append(output)
        current = output.kept
    return outputs


def _chain_task():
    """The Prefect task around ``run_chain_shard``."""
    from prefect import task

    @task(**_task_options("chain-shard"))
    def chain_shard(
        links: list[Link],
        shard: ShardRef,
        run: RunInfo,
        location: Location | None = None,
        report: bool = True,
    ) -> list[ShardOutput]:
        if location is None:
            return run_chain_shard(links, shard, run, report)
        with location.active():
            return run_chain_shard(links, shard, run, report)

    return chain_shard


_CHAIN_TASK = None


def chain_task() -> Any:
    global _CHAIN_TASK
    if _CHAIN_TASK is None:
        _CHAIN_TASK = _chain_task()
    return _CHAIN_TASK


OnChain = Callable[[int, list[ShardOutput]], None]


def run_chain(
    links: list[Link],
    shards: Iterable[ShardRef],
    run: RunInfo,
    task_runner: Any = None,
    location: Location | None = None,
    on_shard: OnChain | None = None,
) -> list[StageOutput]:
    """Stages chained shard by shard: a shard moves to the next stage as soon as it is
    through one, so the LLM server is kept busy by later shards while earlier ones run
    in the sandbox, and no stage waits for its slowest shard before the next begins.
    Returns one output per stage, shards in input order. ``on_shard(index, outputs)``
    is called in this thread as each shard finishes the whole chain."""
    from prefect.context import FlowRunContext

    location = location or Location.here()
    reporter = progress.current()
    shards, known = _with_row_count(shards)
    for k, link in enumerate(links):
        reporter.start(link.stage.name, known if k == 0 else 0)
    done = on_shard or (lambda _i, _o: None)
    per_shard: list[list[ShardOutput]] = []

    def collect(outputs: list[ShardOutput]) -> None:
        done(len(per_shard), outputs)
        per_shard.append(outputs)

    name = f"{links[0].stage.name}-{links[-1].stage.name}"
    try:
        if FlowRunContext.get() is None:
            with location.active():
                for s in shards:
                    collect(run_chain_shard(links, s, run))
        elif task_runner is None:
            # More shards in flight than one stage would hold: some wait on the LLM
            # while others are in the sandbox.
            window: deque[Future] = deque()
            for i, s in enumerate(shards):
                if len(window) >= 2 * shards_in_flight():
                    collect(window.popleft().result())
                task = chain_task().with_options(task_run_name=f"{name}[{i}]")
                window.append(task.submit(links, s, run, location))
            for future in window:
                collect(future.result())
        else:
            per_shard = _chain_on(task_runner, links, list(shards), run, location, done)
    finally:
        for link in links:
            reporter.finish(link.stage.name)
    return [
        StageOutput(stage=link.stage.name, shards=[outputs[k] for outputs in per_shard])
        for k, link in enumerate(links)
    ]


def _chain_on(
    task_runner: Any,
    links: list[Link],
    shards: list[ShardRef],
    run: RunInfo,
    location: Location,
    done: OnChain,
) -> list[list[ShardOutput]]:
    from prefect.futures import as_completed

    reporter = progress.current()
    index = {}
    for i, s in enumerate(shards):
        task = chain_task().with_options(task_run_name=f"chain[{i}]")
        parameters = {"links": links, "shard": s, "run": run, "location": location,
                      "report": False}  # fmt: skip
        index[task_runner.submit(task, parameters=parameters)] = i
    placed: dict[int, list[ShardOutput]] = {}
    for future in as_completed(list(index)):
        i = index[future]
        outputs = future.result()
        for k, (link, output) in enumerate(zip(links, outputs, strict=True)):
            if k:
                progress.extend(link.stage.name, output.input.rows)
            reporter.advance(link.stage.name, output.input.rows)
            progress.kept(link.stage.name, output.kept.rows)
        done(i, outputs)
        placed[i] = outputs
    return [placed[i] for i in sorted(placed)]


# --- whole-dataset steps ------------------------------------------------------------------


def run_global(
    stage: GlobalStage, shards: list[ShardRef], config: Any, run: RunInfo, shard_size: int = 1000
) -> StageOutput:
    """Run a whole-dataset step once over all shards (cached like ``run_shard``)."""
    combined = ShardRef(
        path="",
        rows=sum(s.rows for s in shards),
        fingerprint=hashlib.sha256("".join(s.fingerprint for s in shards).encode()).hexdigest(),
    )
    key = shard_key(stage, config, combined)
    directory = fsio.join(shard_root(), "shards", stage.name, key)
    marker = fsio.join(directory, "_DONE.json")
    reporter = progress.current()
    reporter.start(stage.name, combined.rows)
    if fsio.exists(marker):
        done = StageOutput.model_validate_json(fsio.read_text(marker))
        reporter.advance(stage.name, combined.rows)
        progress.kept(stage.name, done.n_kept)
        reporter.finish(stage.name)
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
    progress.kept(stage.name, sum(ref.rows for ref in written["kept"]))
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
