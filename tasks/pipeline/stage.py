"""The author's contract: a stage is a plain function over a batch of records.

A stage function takes the rows of one shard, its configuration (a pydantic model) and a
small context, and returns the rows it keeps, the rows it rejects (each with a stage and
a reason) and the LLM calls it made. It knows nothing of Prefect, so it is tested on
plain lists; ``tasks.pipeline.runner`` runs it shard by shard as Prefect task runs and
``tasks.pipeline.run.Run`` records what it did.

An LLM stage is declared with :func:`tasks.pipeline.llm_stage.llm_stage` (a template, an
answer schema, a ``parse``); a step that must see every row at once (dedup, balance) is
a :class:`GlobalStage`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pydantic import BaseModel, Field, PrivateAttr

from tasks.core import progress
from tasks.core.records import Rejection
from tasks.llm.base import ChatResult
from tasks.pipeline.source import code_hash
from tasks.store.shards import ShardRef, iter_shards


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
    _counted: int = PrivateAttr(0)

    def progress(self, n: int = 1) -> None:
        """Count ``n`` input rows done. Optional: the runner counts whatever a stage did
        not when its shard finishes (the LLM stages count rows as their answers come)."""
        self._counted += n
        if self.report:
            progress.current().advance(self.stage, n)

    @property
    def counted(self) -> int:
        return self._counted


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
        self.rejected.append(Rejection.of(record, stage, reason, detail).row())

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
        "attempts": result.attempts,
        "error": result.error or "",
    }


StageFn = Callable[[list[dict[str, Any]], Any, StageContext], StageResult]


@dataclass(frozen=True)
class Stage:
    """A named stage function. Its cache key hashes ``code`` (default: ``fn``) and what
    that uses in its own module (:mod:`tasks.pipeline.source`); bump ``version`` when its
    behaviour changes in a way that code does not show (a helper in another module)."""

    name: str
    fn: StageFn
    version: str = "1"
    code: tuple[Any, ...] = field(default=(), compare=False)

    @cached_property
    def source_hash(self) -> str:
        return code_hash(*(self.code or (self.fn,)))


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
    seconds: float = 0.0  # wall time of the stage's function on this shard, when made

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

    def rejections(self) -> Iterator[Rejection]:
        for row in self.rejected_rows():
            yield Rejection.from_row(row, self.stage)


GlobalFn = Callable[[Iterator[dict[str, Any]], Any, StageContext], Iterator[tuple[str, dict]]]


@dataclass(frozen=True)
class GlobalStage:
    """A step that needs every row at once (dedup, balance, quantiles). Its function reads a
    stream of rows and yields ``("kept", row)`` or ``("rejected", rejection row)``; the
    runner writes them in shards as they come, so memory holds what the function keeps
    (e.g. a set of hashes), not the dataset."""

    name: str
    fn: GlobalFn
    version: str = "1"

    @cached_property
    def source_hash(self) -> str:
        return code_hash(self.fn)
