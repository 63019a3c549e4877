"""A recipe run: its identity, its stages' outputs, its gates, its funnel, its artifacts.

A flow opens one ``Run`` and hands it every stage::

    with Run(RECIPE.name, params) as run:
        seeds = run.inputs(rows)
        problems = run.stage(PROBLEMS, seeds, p.problems)
        run.gate(problems, "code_sft.problems")
        ...
        return run.publish(final, to_example)

The run keeps the outputs of its stages (so publishing finds every rejection), counts the
funnel from them, and is the only place that writes the catalog during a run: the catalog
always has a single writer (the flow's process) while shards are made in any number of
threads or workers. Leaving the ``with`` block finishes the run as completed, or as failed
with the error.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, nullcontext
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tasks.core import progress
from tasks.core.janitor import ensure_janitor
from tasks.core.killpoints import kill_point
from tasks.core.paths import Location
from tasks.gates import gx, memo, validation
from tasks.gates.suites import SuiteSpec, load_suite
from tasks.gates.worker import worker as gate_worker
from tasks.pipeline import artifacts, run_logs
from tasks.pipeline.executors import make_task_runner, shared_api
from tasks.pipeline.facts import RunFacts
from tasks.pipeline.outcome import check_kept
from tasks.pipeline.params import ProviderParams, card_params_of, runtime_of
from tasks.pipeline.preview import preview_document
from tasks.pipeline.publish import publish_dataset, register_kept, rejected_rows
from tasks.pipeline.report import report_location, write_report_of_rows
from tasks.pipeline.runner import (
    InputShards,
    Link,
    OnShard,
    iter_input_shards,
    run_chain,
    run_global,
    run_stage,
)
from tasks.pipeline.stage import GlobalStage, RunInfo, ShardOutput, ShardRef, Stage, StageOutput
from tasks.pipeline.summary import summary_markdown
from tasks.store import fsio
from tasks.store.catalog import Catalog
from tasks.store.shards import iter_shards

log = logging.getLogger("winnow")


def _chunks(rows: Iterator[dict[str, Any]], size: int = 10_000) -> Iterator[list[dict[str, Any]]]:
    """Catalog writes in batches, so memory holds one batch, not a stage's rejections."""
    while chunk := list(islice(rows, size)):
        yield chunk


def new_run_id(recipe: str) -> str:
    return f"{recipe}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


class FunnelRow(BaseModel):
    stage: str
    n_in: int
    n_out: int
    n_rejected: int
    reused: bool = False
    seconds: float = 0.0  # wall time of the stage


class Run:
    """One run of a recipe. Use it as a context manager around the flow's stages."""

    def __init__(self, recipe: str, params: BaseModel, round_: int = 0) -> None:
        self.info = RunInfo(run_id=new_run_id(recipe), recipe=recipe, round=round_)
        self.params = params
        runtime = runtime_of(params)
        if runtime.storage:
            fsio.check(runtime.storage)
        self.shard_size = runtime.shard_size
        self.min_kept = runtime.min_kept
        self.location = Location.here(runtime.storage)
        # Built now so a missing package is reported before any work; started (a cluster
        # created or joined) at the first stage, stopped when the run finishes.
        self._task_runner = make_task_runner(runtime)
        self._runner_stack = ExitStack()
        self._runner_started = False
        self._active: ExitStack | None = None
        self.catalog = Catalog()
        self.outputs: list[StageOutput] = []
        self.side_outputs: list[StageOutput] = []  # side_stage: off the funnel, unpublished
        self.funnel: list[FunnelRow] = []
        self.gates: list[gx.GateResult] = []
        self.gate_stages: list[str] = []  # the stage each of ``gates`` looked at
        self.started = time.monotonic()
        self.started_at = datetime.now(UTC)
        # a preview: this many inputs through every stage, nothing published
        self.preview: int | None = runtime.preview
        self.preview_rows = 0
        self.full_rows: int | None = None  # inputs the full run would take
        self.whole_dataset: set[str] = set()  # stages run by global_stage
        self._preview_document: dict[str, Any] | None = None
        self.live = artifacts.LiveProgress(recipe, self.info.run_id)
        self.summary = artifacts.SummaryArtifact(recipe, self.info.run_id)
        self._reporter: progress.Reporter | None = None
        self.published = False
        self.report_at: str | None = None  # where the run's report.html was written
        # the rubric feedback the recipe published (funnel.json's ``rubric_feedback``),
        # kept in the catalog's ``runs.summary`` for `winnow show` and `winnow rounds`
        self.feedback: dict[str, Any] | None = None
        run_logs.quiet_tracebacks()
        ensure_janitor()  # before any process this run starts: none outlives it
        gate_worker().start()  # GX imports there, on another core, while the run starts
        provider, model = _generator_of(params)
        self.catalog.start_run(
            run_id=self.info.run_id,
            recipe=recipe,
            params=params.model_dump(mode="json"),
            flow_run_id=artifacts.flow_run_id(),
            model=model,
            provider=provider,
            round=round_,
        )

    @property
    def run_id(self) -> str:
        return self.info.run_id

    @property
    def recipe(self) -> str:
        return self.info.recipe

    @property
    def out(self) -> str | None:
        return getattr(self.params, "out", None)

    # --- the flow's steps ---

    def inputs(self, rows: Iterable[dict[str, Any]], total: int | None = None) -> InputShards:
        """The run's input rows as content-addressed shards of ``shard_size`` rows, written
        as the first stage takes them (its first requests leave before a large input is
        all written). ``total``: the number of rows, when known (for progress).

        In a preview, only the first ``preview`` rows go in, and the rest are counted (not
        kept in memory) so the full run can be projected."""
        if self.preview:
            source = iter(rows)
            head = list(islice(source, self.preview))
            self.preview_rows = len(head)
            self.full_rows = total if total is not None else len(head) + sum(1 for _ in source)
            rows, total = head, len(head)
        return InputShards(iter_input_shards(rows, self.shard_size, self.recipe), total)

    def stage(
        self,
        stage: Stage,
        shards: Iterable[ShardRef],
        config: Any,
        on_shard: OnShard | None = None,
    ) -> StageOutput:
        """Run a stage over shards and record what went in, out, and why rows left: each
        shard's rejections and LLM calls reach the catalog as the shard completes.
        ``on_shard(index, output)`` is called too, in this thread, as each one does."""
        runner = self._started_runner()
        started = datetime.now(UTC)

        def done(index: int, shard: ShardOutput) -> None:
            self._record_shard(stage.name, shard)
            if on_shard is not None:
                on_shard(index, shard)

        with shared_api() if runner is not None else nullcontext():
            output = run_stage(stage, shards, config, self.info, runner, self.location, done)
        return self._record(output, started, shards_recorded=True)

    def side_stage(self, stage: Stage, shards: Iterable[ShardRef], config: Any) -> StageOutput:
        """Run a stage off the funnel's path, for figures about rows already decided (the
        rubric feedback scores the judge's rejections): sharded, cached and journaled like
        any stage, its calls recorded and costed, but its rows are neither published nor
        counted in the funnel, and its rejections are not the run's."""
        runner = self._started_runner()

        def done(index: int, shard: ShardOutput) -> None:
            self._record_calls(StageOutput(stage=stage.name, shards=[shard]))

        with shared_api() if runner is not None else nullcontext():
            output = run_stage(stage, shards, config, self.info, runner, self.location, done)
        self.side_outputs.append(output)
        return output

    def chain(
        self, shards: Iterable[ShardRef], *links: tuple[Stage, Any] | tuple[Stage, Any, str]
    ) -> list[StageOutput]:
        """Stages that shards go through one after another without waiting for each other:
        ``links`` are ``(stage, config)`` or ``(stage, config, "suite")``. A shard moves on
        as soon as it is through a stage, so while some shards are in the sandbox others
        keep the LLM busy. A suite's row-wise expectations are checked on each shard's
        kept rows before the next stage takes them (a failure stops the run there); the
        whole suite is then run on the stage's output, as ``gate`` does. Returns each
        stage's output, in order, each recorded in the funnel like any stage's."""
        chain = [
            Link(
                stage=link[0],
                config=link[1],
                check=load_suite(link[2]) if len(link) > 2 else None,  # type: ignore[misc]
            )
            for link in links
        ]
        runner = self._started_runner()
        started = datetime.now(UTC)

        def done(index: int, outputs: list[ShardOutput]) -> None:
            for link, shard in zip(chain, outputs, strict=True):
                self._record_shard(link.stage.name, shard)

        with shared_api() if runner is not None else nullcontext():
            outputs = run_chain(chain, shards, self.info, runner, self.location, done)
        for link, output in zip(chain, outputs, strict=True):
            self._record(output, started, shards_recorded=True)
            if link.check is not None:
                self.gate(output, link.check)
        return outputs

    def global_stage(self, stage: GlobalStage, shards: list[ShardRef], config: Any) -> StageOutput:
        """Run a whole-dataset step (dedup, balance) and record it like any stage."""
        started = datetime.now(UTC)
        self.whole_dataset.add(stage.name)
        with self.location.active():
            # in shards of the run's size, so that the stages after it run in parallel
            output = run_global(stage, shards, config, self.info, self.shard_size)
        return self._record(output, started)

    def gate(self, output: StageOutput, suite: str | SuiteSpec) -> gx.GateResult:
        """Validate a stage's kept rows with a GX suite (a name in ``expectations/``, or a
        spec built at run time, e.g. with bounds from the run's parameters); a failed
        critical suite stops the run here, before anything downstream or any publishing."""
        return self._gate(output.stage, output.kept, suite)

    def gate_report(
        self, stage: str, report: dict[str, Any], suite: str | SuiteSpec
    ) -> gx.GateResult:
        """Validate a report about a stage (one row of figures, e.g. the diversity of its
        rows) with a GX suite, as :meth:`gate` validates rows."""
        with self.location.active():
            shards = list(iter_input_shards([report], 1, f"{self.recipe}-{stage}-report"))
        return self._gate(stage, shards, suite)

    def _gate(self, stage: str, shards: list[ShardRef], suite: str | SuiteSpec) -> gx.GateResult:
        spec = load_suite(suite) if isinstance(suite, str) else suite
        kill_point(f"gate.{spec.name}")
        if artifacts.flow_run_id() is None:
            return self._check(stage, shards, spec)
        # in a flow run, a task run of its own, named for its suite: the UI's graph shows
        # the gate (and its time) instead of a gap between stages
        from prefect import task
        from prefect.cache_policies import NO_CACHE

        as_task = task(
            self._check,
            name=f"gate {spec.name}",
            cache_policy=NO_CACHE,  # the memo below is the cache: same suite, same rows
            persist_result=False,
        )
        return as_task(stage, shards, spec)

    def _check(self, stage: str, shards: list[ShardRef], spec: SuiteSpec) -> gx.GateResult:
        key = memo.gate_key(spec, [s.fingerprint for s in shards])
        result = memo.recall(key)  # the same suite on the same rows: the same verdict
        if result is None:
            result = validation.validate(shards, spec)
            memo.remember(key, result)
        self.gates.append(result)
        self.gate_stages.append(stage)
        self.catalog.add_validation(self.run_id, stage, result)
        artifacts.gate(self.recipe, self.run_id, stage, result, spec)
        if self.preview and not result.success:
            # a few rows say little about a whole-output suite: the preview reports it
            # (in its gates) and goes on to the projection instead of stopping
            log.warning("preview: %s", result.summary())
            return result
        gx.enforce(result)
        return result

    def publish(
        self,
        final: StageOutput,
        to_example: Callable[[dict[str, Any]], dict[str, Any]],
        extra: dict[str, Any] | None = None,
        summary: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Publish ``final``'s rows (as ``to_example`` makes them) and every rejection of
        every stage this run ran to the run's ``out``; returns the funnel document.
        A preview publishes nothing and returns :meth:`preview_document` instead."""
        if self.preview:
            return self.preview_document(final, to_example, summary)
        if self.out is None:
            raise ValueError("this recipe's parameters have no 'out' to publish to")
        funnel = {**self.funnel_document(final.n_kept), "out": self.out, **(summary or {})}
        self.feedback = funnel.get("rubric_feedback")
        facts = self.facts(funnel)
        publish_dataset(self.out, final, self.outputs, to_example, funnel, extra, facts)
        register_kept(self.catalog, self.run_id, final)
        self.report_at = report_location(self.out, one_file=False)
        artifacts.report(self.recipe, self.run_id, self.report_at)
        artifacts.examples(
            self.recipe,
            self.run_id,
            [to_example(r) for r in islice(final.kept_rows(), 3)],
            list(islice(rejected_rows(self.outputs), 5)),
        )
        self.published = True
        check_kept(final.n_kept, self.min_kept, self.out)  # published first, then failed
        return funnel

    def report_beside(
        self, out_file: str, funnel: dict[str, Any], kept: Iterable[dict[str, Any]]
    ) -> str:
        """Write the report of a run whose output is one file (not a dataset folder)
        beside that file, from its kept rows and every rejection; returns its path."""
        location = report_location(out_file, one_file=True)
        rejected = rejected_rows(self.outputs)
        write_report_of_rows(Path(location), self.facts(funnel), kept, rejected)
        artifacts.report(self.recipe, self.run_id, location)
        self.report_at = location
        return location

    def preview_document(
        self,
        final: StageOutput,
        to_example: Callable[[dict[str, Any]], dict[str, Any]],
        summary: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """What a preview says: its funnel, a few kept and rejected examples with their
        reasons, and the projection of the full run (kept as an artifact too)."""
        doc = preview_document(self, final, to_example, summary)
        self._preview_document = doc
        artifacts.preview(self.recipe, self.run_id, doc)
        return doc

    def funnel_document(self, n_kept: int) -> dict[str, Any]:
        """What ``funnel.json`` and a flow's return value say of the run."""
        costs = self.costs()
        return {
            "run_id": self.run_id,
            "recipe": self.recipe,
            "stages": [r.model_dump() for r in self.funnel],
            "kept": n_kept,
            "tokens": {
                "prompt": costs.get("prompt_tokens", 0),
                "completion": costs.get("completion_tokens", 0),
            },
            "llm_calls": costs.get("calls", 0),
            "llm_calls_from_journal": costs.get("cached_calls", 0),
            "llm_sends": costs.get("sends", 0),  # every attempt, retries of refusals included
            "cost_usd": costs.get("cost_usd", 0.0),
            "gates": [
                {"suite": g.suite, "severity": g.severity, "success": g.success} for g in self.gates
            ],
        }

    def costs(self) -> dict[str, Any]:
        return self.catalog.costs(self.run_id)

    def facts(self, funnel: dict[str, Any]) -> RunFacts:
        """What the report and the dataset card say of this run, as it publishes."""
        return RunFacts(
            run_id=self.run_id,
            recipe=self.recipe,
            params=self.params.model_dump(mode="json"),
            card=card_params_of(self.params),
            started_at=self.started_at,
            published_at=datetime.now(UTC),
            funnel=funnel,
            usage=self.catalog.llm_usage(self.run_id),
            validations=self.catalog.validations(self.run_id),
        )

    # --- bookkeeping ---

    def _record_shard(self, stage: str, shard: ShardOutput) -> None:
        """One shard's rejections and LLM calls into the catalog."""
        one = StageOutput(stage=stage, shards=[shard])
        # The catalog keeps why each record left; the record itself stays in the shards.
        rejections = (r.model_copy(update={"record": None}) for r in one.rejections())
        for chunk in _chunks(rejections):
            self.catalog.add_rejections(self.run_id, chunk)
        self._record_calls(one)

    def _record_calls(self, one: StageOutput) -> None:
        """A shard's LLM calls into the catalog (so they count in the run's costs)."""
        remote = self._task_runner is not None  # answered on a worker, out of our sight
        for chunk in _chunks(self._calls(one)):
            self.catalog.add_llm_calls(self.run_id, chunk)
            if remote:  # so the cost so far counts them as their shard comes back
                for call in chunk:
                    if not call.get("cached"):
                        progress.spent(float(call.get("cost_usd") or 0.0))

    def _record(
        self, output: StageOutput, started: datetime, shards_recorded: bool = False
    ) -> StageOutput:
        finished = datetime.now(UTC)
        row = FunnelRow(
            stage=output.stage,
            n_in=output.n_in,
            n_out=output.n_kept,
            n_rejected=output.n_rejected,
            reused=output.reused,
            seconds=round((finished - started).total_seconds(), 3),
        )
        self.outputs.append(output)
        self.funnel.append(row)
        self.catalog.record_stage(
            run_id=self.run_id,
            stage=output.stage,
            n_in=row.n_in,
            n_out=row.n_out,
            n_rejected=row.n_rejected,
            shards=output.kept,
            started_at=started,
            finished_at=finished,
        )
        if not shards_recorded:
            for shard in output.shards:
                self._record_shard(output.stage, shard)
        return output

    @staticmethod
    def _calls(output: StageOutput) -> Iterator[dict[str, Any]]:
        for shard in output.shards:
            for c in iter_shards([shard.calls.path]):
                c = dict(c, stage=output.stage)
                if shard.reused:  # answered by an earlier run: nothing was paid now
                    c["cached"] = True
                    c["cost_usd"] = 0.0
                yield c

    def _started_runner(self) -> Any:
        if self._task_runner is not None and not self._runner_started:
            self._runner_stack.enter_context(self._task_runner)
            self._runner_started = True
        return self._task_runner

    def __enter__(self) -> Run:
        """Inside the block, shards (inputs included) go to the run's storage."""
        self._active = ExitStack()
        self._active.enter_context(self.location.active())
        # what the terminal shows, also as a live artifact on the run's page in the UI
        self.summary.open()  # first of the run's artifacts
        self._reporter = progress.install(progress.Fanout(progress.current(), self.live.open()))
        self._active.enter_context(run_logs.to_run_page(artifacts.flow_run_id()))
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if self._active is not None:
            self._active.close()
            self._active = None
        if self._reporter is not None:
            progress.install(self._reporter)
            self._reporter = None
            self.live.close("completed" if exc is None else "failed")
        if exc is None:
            self.finish("completed")
        else:
            self.finish("failed", error=f"{type(exc).__name__}: {exc}")

    def finish(self, status: str, error: str | None = None) -> None:
        self._runner_stack.close()  # a temporary cluster goes away with the run
        self._runner_started = False
        if self.preview:  # nothing published: no output directory, a status of its own
            status = "preview" if status == "completed" else status
            self.catalog.finish_run(
                self.run_id, status=status, error=error, summary=self._preview_document
            )
            self._write_summary(status, error)
            return
        self.catalog.finish_run(
            self.run_id,
            status=status,
            out_dir=self.out,
            error=error,
            summary={"rubric_feedback": self.feedback} if self.feedback else None,
        )
        if status == "completed" or self.published:
            artifacts.summary(self.recipe, self.run_id, [r.model_dump() for r in self.funnel],
                              self.costs())  # fmt: skip
        self._write_summary(status, error)

    def _write_summary(self, status: str, error: str | None) -> None:
        """The run's summary artifact, as it ends (whatever the end)."""
        if self.summary.artifact_id is None:
            return
        written = status == "completed"
        try:
            reasons = self.catalog.rejection_reasons(self.run_id, limit=50)
            markdown = summary_markdown(
                self.run_id,
                status,
                [r.model_dump() for r in self.funnel],
                self.costs(),
                reasons,
                [
                    {**g.model_dump(mode="json"), "stage": stage}
                    for g, stage in zip(self.gates, self.gate_stages, strict=True)
                ],
                out=_where(self.out) if self.out and (self.published or written) else None,
                report=artifacts.report_uri(self.report_at) if self.report_at else None,
                error=error,
                feedback=self.feedback,
            )
        except Exception as exc:  # a summary is worth a warning, never a failed run
            log.warning("no summary of the run: %s", exc)
            return
        self.summary.write(markdown, status)


def _where(out: str) -> str:
    """An output location as a person finds it: a URL as is, a path made absolute."""
    return out if "://" in out else str(Path(out).absolute())


def _generator_of(params: BaseModel) -> tuple[str, str]:
    """The generator's provider and model, for the catalog's ``runs`` row."""
    if isinstance(params, ProviderParams):
        return params.provider, params.model
    return "", ""
