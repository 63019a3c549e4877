"""The batch API contract: what a stage asks of a provider's batch API, what comes back,
and how jobs are polled. ``jobs.py`` runs jobs through it; ``openai_api.py`` and
``anthropic_api.py`` implement it for the two providers that have one."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from tasks.llm.base import ChatRequest, Completion, ConfigError, ProviderSpec

BATCH_KINDS = ("openai", "openai-compatible", "anthropic")


class BatchSettings(BaseModel):
    """How batch jobs are polled and retried. Part of a stage's config."""

    poll_initial_s: float = Field(10.0, gt=0, description="first wait between polls")
    poll_max_s: float = Field(300.0, gt=0, description="longest wait between polls")
    poll_factor: float = Field(1.5, ge=1.0, description="back-off factor between polls")
    max_wait_s: float = Field(
        26 * 3600.0, gt=0, description="give up waiting (the job stays resumable)"
    )
    max_rounds: int = Field(3, ge=1, le=20, description="submissions (1 + resubmissions)")


class BatchError(BaseModel):
    """Why one request of a batch has no answer."""

    kind: Literal["failed", "expired", "canceled", "invalid"]
    message: str

    @property
    def retryable(self) -> bool:
        """Expired, canceled and server-side failures are worth resubmitting; a request
        the API rejected as invalid is not (it would fail the same way)."""
        return self.kind != "invalid"


class BatchStatus(BaseModel):
    state: Literal["running", "ended"]
    detail: str = ""


class BatchAdapter(Protocol):
    """One provider's batch API. Synchronous: it runs in a stage's task thread."""

    def submit(self, items: list[tuple[str, ChatRequest]], job: str, workdir: Path) -> str:
        """Write the request file (if the API takes one), create the batch, return its id."""
        ...

    def status(self, batch_id: str) -> BatchStatus: ...

    def find(self, job: str) -> str | None:
        """The id of a batch already created for ``job``, if the API can tell: the
        process may have died between creating the batch and saving its id."""
        ...

    def results(self, batch_id: str) -> dict[str, Completion | BatchError]:
        """Every custom id the API reports on; a missing id counts as failed."""
        ...


def unsupported(kind: str) -> ConfigError:
    return ConfigError(
        f"batch=true needs a provider with a batch API ({', '.join(BATCH_KINDS)}), not {kind!r}"
    )


def check_batch_support(spec: ProviderSpec) -> None:
    """Raise ConfigError before any spending when ``spec`` cannot run in batch mode."""
    if spec.kind not in BATCH_KINDS:
        raise unsupported(spec.kind)


def write_jsonl(path: Path, lines: Sequence[dict]) -> Path:
    """A request file, one JSON object a line (written atomically)."""
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as fh:
        for line in lines:
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path
