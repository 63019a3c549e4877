"""A recipe run: its identity, its catalog rows, its gates, its funnel and its artifacts.

Flows call this; it is the only place that writes the catalog during a run, so the
catalog always has a single writer (the flow's process) while shards are made in any
number of threads or workers.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from pydantic import BaseModel

from tasks.gates import gx, memo, sharded
from tasks.killpoints import kill_point
from tasks.runners import make_task_runner, runtime_of, shared_api
from tasks.stage import GlobalStage, RunInfo, ShardRef, Stage, StageOutput, run_global, run_stage
from tasks.store import fsio
from tasks.store.catalog import Catalog
from tasks.store.shards import iter_shards
from winnow.paths import Location

log = logging.getLogger("winnow")


def _chunks(rows: Iterator[dict[str, Any]], size: int = 10_000) -> Iterator[list[dict[str, Any]]]:
    """Catalog writes in batches, so memory holds one batch, not a stage's rejections."""
    while chunk := list(islice(rows, size)):
        yield chunk


def new_run_id(recipe: str) -> str:
    return f"{recipe}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def _flow_run_id() -> str | None:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx and ctx.flow_run else None


class FunnelRow(BaseModel):
    stage: str
    n_in: int
    n_out: int
    n_rejected: int
    reused: bool = False


class Run:
    """One run of a recipe. Create it at the start of a flow; call ``finish`` at the end."""

    def __init__(self, recipe: str, params: BaseModel, round_: int = 0) -> None:
        self.info = RunInfo(run_id=new_run_id(recipe), recipe=recipe, round=round_)
        runtime = runtime_of(params)
        if runtime.storage:
            fsio.check(runtime.storage)
        self.location = Location.here(runtime.storage)
        # Built now so a missing package is reported before any work; started (a cluster
        # created or joined) at the first stage, stopped when the run finishes.
        self._task_runner = make_task_runner(runtime)
        self._runner_stack = ExitStack()
        self._runner_started = False
        self.catalog = Catalog()
        self.funnel: list[FunnelRow] = []
        self.gates: list[gx.GateResult] = []
        self.started = time.monotonic()
        self.catalog.start_run(
            run_id=self.info.run_id,
            recipe=recipe,
            params=params.model_dump(mode="json"),
            flow_run_id=_flow_run_id(),
            round=round_,
        )

    @property
    def run_id(self) -> str:
        return self.info.run_id

    def stage(self, stage: Stage, shards: list[ShardRef], config: Any) -> StageOutput:
        """Run a stage over shards and record what went in, out, and why rows left."""
        runner = self._started_runner()
        with shared_api() if runner is not None else nullcontext():
            output = run_stage(stage, shards, config, self.info, runner, self.location)
        self._record(output)
        return output

    def _started_runner(self) -> Any:
        if self._task_runner is not None and not self._runner_started:
            self._runner_stack.enter_context(self._task_runner)
            self._runner_started = True
        return self._task_runner

    def global_stage(self, stage: GlobalStage, shards: list[ShardRef], config: Any) -> StageOutput:
        """Run a whole-dataset step (dedup, balance) and record it like any stage."""
        with self.location.active():
            output = run_global(stage, shards, config, self.info)
        self._record(output)
        return output

    def _record(self, output: StageOutput) -> None:
        row = FunnelRow(
            stage=output.stage,
            n_in=output.n_in,
            n_out=output.n_kept,
            n_rejected=output.n_rejected,
            reused=output.reused,
        )
        self.funnel.append(row)
        self.catalog.record_stage(
            run_id=self.run_id,
            stage=output.stage,
            n_in=row.n_in,
            n_out=row.n_out,
            n_rejected=row.n_rejected,
            shards=output.kept,
        )
        rejections = (
            {
                "stage": r.get("stage", output.stage),
                "record_id": r.get("record_id", ""),
                "reason": r.get("reason", ""),
                "detail": r.get("detail") or {},
            }
            for r in output.rejected_rows()
        )
        for chunk in _chunks(rejections):
            self.catalog.add_rejections(self.run_id, chunk)
        for chunk in _chunks(self._calls(output)):
            self.catalog.add_llm_calls(self.run_id, chunk)

    @staticmethod
    def _calls(output: StageOutput) -> Iterator[dict[str, Any]]:
        for shard in output.shards:
            for c in iter_shards([shard.calls.path]):
                c = dict(c, stage=output.stage)
                if shard.reused:  # answered by an earlier run: nothing was paid now
                    c["cached"] = True
                    c["cost_usd"] = 0.0
                yield c

    def gate(self, output: StageOutput, suite: str | gx.SuiteSpec) -> gx.GateResult:
        """Validate a stage's kept rows with a GX suite (a name in ``expectations/``, or a
        spec built at run time, e.g. with bounds from the run's parameters); a failed
        critical suite stops the run here, before anything downstream or any publishing."""
        spec = gx.load_suite(suite) if isinstance(suite, str) else suite
        kill_point(f"gate.{spec.name}")
        key = memo.gate_key(spec, [s.fingerprint for s in output.kept])
        result = memo.recall(key)  # the same suite on the same rows: the same verdict
        if result is None:
            result = sharded.validate_shards(output.kept, spec)
            memo.remember(key, result)
        self.gates.append(result)
        self.catalog.add_validation(self.run_id, output.stage, result)
        _gate_artifact(self.run_id, output.stage, result)
        gx.enforce(result)
        return result

    def examples_artifact(self, kept: list[dict], rejected: list[dict]) -> None:
        """A few kept and rejected examples on the run's page in the UI."""
        if not _in_flow():
            return
        import json

        from prefect.artifacts import create_markdown_artifact

        def block(row: dict) -> str:
            text = json.dumps(row, indent=2, ensure_ascii=False, default=str)
            return "```json\n" + (text[:3000] + "\n..." if len(text) > 3000 else text) + "\n```"

        md = [f"### Examples from `{self.run_id}`", "", "#### Kept", ""]
        md += [block(r) for r in kept] or ["(none)"]
        md += ["", "#### Rejected", ""]
        md += [
            f"**{r.get('stage')}**: {r.get('reason')}\n\n{block(r.get('record', {}))}"
            for r in rejected
        ] or ["(none)"]
        create_markdown_artifact(
            key=_artifact_key(self.info.recipe, "examples"),
            markdown="\n".join(md),
            description=self.run_id,
        )

    def costs(self) -> dict[str, Any]:
        return self.catalog.costs(self.run_id)

    @contextmanager
    def guard(self, out: str | None = None) -> Iterator[None]:
        """Finish the run as completed, or as failed with the error, whatever happens.
        Inside it, shards (inputs included) go to the run's storage."""
        try:
            with self.location.active():
                yield
        except BaseException as exc:
            self.finish("failed", out=out, error=f"{type(exc).__name__}: {exc}")
            raise
        self.finish("completed", out=out)

    def finish(self, status: str, out: str | None = None, error: str | None = None) -> None:
        self._runner_stack.close()  # a temporary cluster goes away with the run
        self._runner_started = False
        self.catalog.finish_run(self.run_id, status=status, out_dir=out, error=error)
        if status == "completed":
            _summary_artifacts(self)


# --- Prefect artifacts (the run's page in the UI) --------------------------------------------


def _artifact_key(*parts: str) -> str:
    raw = "-".join(parts).lower()
    return "".join(ch if ch.isalnum() or ch == "-" else "-" for ch in raw)[:100]


def _in_flow() -> bool:
    return _flow_run_id() is not None


def _gate_artifact(run_id: str, stage: str, result: gx.GateResult) -> None:
    if not _in_flow():
        return
    from prefect.artifacts import create_markdown_artifact

    status = "passed" if result.success else f"FAILED ({result.severity})"
    lines = [f"### Gate `{result.suite}` after stage `{stage}`: {status}", ""]
    for f in result.failures[:20]:
        lines.append(f"- `{f.get('expectation')}` {f.get('kwargs', {})}: {f.get('observed', '')}")
    create_markdown_artifact(
        key=_artifact_key("gate", stage), markdown="\n".join(lines), description=run_id
    )


def _summary_artifacts(run: Run) -> None:
    if not _in_flow():
        return
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    create_table_artifact(
        key=_artifact_key(run.info.recipe, "funnel"),
        table=[r.model_dump() for r in run.funnel],
        description=f"Rejection funnel of {run.run_id}",
    )
    costs = run.costs()
    md = [
        f"### Costs of `{run.run_id}`",
        "",
        "| calls | from journal | prompt tokens | completion tokens | cost (USD) |",
        "|---:|---:|---:|---:|---:|",
        f"| {costs.get('calls', 0)} | {costs.get('cached_calls', 0)} | "
        f"{costs.get('prompt_tokens', 0)} | {costs.get('completion_tokens', 0)} | "
        f"{costs.get('cost_usd', 0.0):.4f} |",
    ]
    create_markdown_artifact(
        key=_artifact_key(run.info.recipe, "costs"), markdown="\n".join(md), description=run.run_id
    )
