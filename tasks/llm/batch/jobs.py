"""Bulk generation through provider batch APIs (OpenAI Batch API, Anthropic Message
Batches) behind the same contract as ``LLMClient.complete_many``.

``complete_many_batched(spec, requests, label=...)`` returns one ``ChatResult`` per
request, in order, and never raises per request. Underneath:

1. the request journal answers every request it already knows (those are never put in a
   batch file, so nothing is paid twice);
2. the rest form a *job*, keyed by ``label`` (the stage), provider, model and the sorted
   request keys. The job's batch id is persisted under ``.winnow/batches/<job>.json``
   right after submission, so a flow killed while waiting and started again finds the
   batch it already submitted and polls it instead of submitting a new one;
3. it polls with exponential back-off, downloads the results, journals every answer with
   ``LLMClient.record(..., batch=True)`` (priced at the batch discount), and
4. resubmits only the requests that failed for a retryable reason or expired, for up to
   ``max_rounds`` submissions. A request still failing after that comes back as a
   ``ChatResult`` with its error (the stage turns it into a recorded rejection).

Provider specifics (request file format, endpoints, result shapes) live in the adapters
``tasks.llm.batch.openai_api`` and ``tasks.llm.batch.anthropic_api``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tasks.core.paths import state_dir
from tasks.llm.base import (
    ChatRequest,
    ChatResult,
    Completion,
    EndpointDown,
    ProviderSpec,
    no_connection,
)
from tasks.llm.batch.api import (
    BatchAdapter,
    BatchError,
    BatchSettings,
    BatchStatus,
    unsupported,
)
from tasks.llm.client import LLMClient
from tasks.llm.clients import client_for
from tasks.llm.outage import POLL_S
from tasks.llm.structured import JsonResult, reask_request, validate

log = logging.getLogger("winnow.batch")


class OutageBound:
    """A batch adapter whose calls wait out a server that refuses connections.

    A batch is waited on for minutes or hours, so its API being restarted meanwhile is
    likely. A call that finds no server tries again every second for up to the spec's
    ``max_outage_s``; then ``EndpointDown`` stops the run with one clear message. Nothing
    is lost: the batch id is saved, so running again polls the same batch. A call that
    reached the server and failed otherwise raises as before."""

    def __init__(
        self, adapter: BatchAdapter, spec: ProviderSpec, sleep: Callable[[float], None]
    ) -> None:
        self.adapter, self.spec, self.sleep = adapter, spec, sleep
        self.where = spec.base_url or spec.kind

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        down_since: float | None = None
        while True:
            tried_at = time.monotonic()
            try:
                return call()
            except Exception as exc:
                if not no_connection(exc):
                    raise
                # from the start of the first failed call: the SDK's own retries inside
                # one call may already have taken seconds
                down_since = down_since if down_since is not None else tried_at
                down_for = time.monotonic() - down_since
                if down_for >= self.spec.max_outage_s:
                    raise EndpointDown(
                        f"cannot reach the batch API at {self.where} for {down_for:.0f} s "
                        f"({what}); stopped waiting. Submitted batches are saved under "
                        f"{batches_dir()}: run the same command again to resume them."
                    ) from exc
                log.warning("batch API at %s unreachable (%s); retrying", self.where, what)
                self.sleep(min(POLL_S, self.spec.max_outage_s - down_for))

    def submit(self, items: list[tuple[str, ChatRequest]], job: str, workdir: Path) -> str:
        return self._call("submit", lambda: self.adapter.submit(items, job, workdir))

    def status(self, batch_id: str) -> BatchStatus:
        return self._call(f"status of {batch_id}", lambda: self.adapter.status(batch_id))

    def find(self, job: str) -> str | None:
        return self._call("find", lambda: self.adapter.find(job))

    def results(self, batch_id: str) -> dict[str, Completion | BatchError]:
        return self._call(f"results of {batch_id}", lambda: self.adapter.results(batch_id))


class BatchTimeout(RuntimeError):
    """A batch did not end within ``max_wait_s``. Its id stays persisted, so running the
    flow again resumes waiting for the same batch."""


class JobState(BaseModel):
    """What is persisted per job (``.winnow/batches/<job>.json``)."""

    job: str
    label: str
    provider: str
    model: str
    batch_id: str
    custom_ids: list[str]
    submitted_at: str
    round: int = 1
    ended: bool = False


def batches_dir() -> Path:
    path = state_dir() / "batches"
    path.mkdir(parents=True, exist_ok=True)
    return path


def job_key(label: str, provider: str, model: str, request_keys: Sequence[str]) -> str:
    blob = "\x1f".join([label, provider, model, *sorted(request_keys)])
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def load_job(job: str) -> JobState | None:
    path = batches_dir() / f"{job}.json"
    if not path.exists():
        return None
    return JobState.model_validate_json(path.read_text())


def save_job(state: JobState) -> None:
    path = batches_dir() / f"{state.job}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(state.model_dump_json(indent=2))
    os.replace(tmp, path)


def adapter_for(client: LLMClient) -> BatchAdapter:
    """The batch adapter of a client's provider (its model must be resolved: check())."""
    kind = client.spec.kind
    if kind == "anthropic":
        from tasks.llm.batch.anthropic_api import AnthropicBatchAdapter

        return AnthropicBatchAdapter(client)
    if kind in ("openai", "openai-compatible"):
        from tasks.llm.batch.openai_api import OpenAIBatchAdapter

        return OpenAIBatchAdapter(client)
    raise unsupported(kind)


def complete_many_batched(
    spec: ProviderSpec,
    requests: Sequence[ChatRequest],
    *,
    label: str,
    settings: BatchSettings | None = None,
    client: LLMClient | None = None,
    adapter: BatchAdapter | None = None,
    on_result: Callable[[int, ChatResult], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[ChatResult]:
    """Answer ``requests`` through the provider's batch API; see the module docstring.
    ``label`` names the caller (e.g. the stage) in the job key and the state file."""
    settings = settings or BatchSettings()
    client = client or client_for(spec)
    client.check()
    adapter = OutageBound(adapter or adapter_for(client), client.spec, sleep)
    keys = [client.key(r) for r in requests]
    results: list[ChatResult | None] = [None] * len(requests)
    by_key: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        by_key.setdefault(key, []).append(i)

    def deliver(key: str, result: ChatResult) -> None:
        for i in by_key[key]:
            results[i] = result
            if on_result:
                on_result(i, result)

    cached = client.journal.get_many(list(by_key)) if client.journal is not None else {}
    for key, entry in cached.items():
        deliver(key, LLMClient._from_entry(entry))
    pending = {k: requests[idx[0]] for k, idx in by_key.items() if k not in cached}

    errors: dict[str, BatchError] = {}
    round_ = 0
    while pending and round_ < settings.max_rounds:
        round_ += 1
        state, answers = _run_job(client, adapter, pending, label, round_, settings, sleep)
        failed: dict[str, ChatRequest] = {}
        for key, request in pending.items():
            answer = answers.get(key) or BatchError(kind="failed", message="no result returned")
            if isinstance(answer, Completion):
                deliver(key, client.record(request, answer, batch=True))
            else:
                errors[key] = answer
                if answer.retryable:
                    failed[key] = request
                else:
                    deliver(key, _error_result(client, key, answer))
        # Marked ended only once every answer is journaled: a crash before this point
        # downloads the same results again on restart instead of paying for a new batch.
        save_job(state.model_copy(update={"ended": True}))
        pending = failed
        if pending:
            log.info("batch %s: resubmitting %d failed or expired request(s)", label, len(pending))
    for key in pending:
        deliver(key, _error_result(client, key, errors[key], rounds=round_))
    return results  # type: ignore[return-value]


def _error_result(
    client: LLMClient, key: str, error: BatchError, rounds: int | None = None
) -> ChatResult:
    suffix = f" (after {rounds} batch submission(s))" if rounds else ""
    return ChatResult(
        key=key,
        error=f"batch {error.kind}: {error.message}{suffix}",
        provider=client.name,
        model=client.model,
    )


def _run_job(
    client: LLMClient,
    adapter: BatchAdapter,
    pending: dict[str, ChatRequest],
    label: str,
    round_: int,
    settings: BatchSettings,
    sleep: Callable[[float], None],
) -> tuple[JobState, dict[str, Completion | BatchError]]:
    """Submit (or find the already submitted batch of) one job, wait, and download.

    The job key covers exactly the requests still unanswered, so a restarted flow, which
    finds the same unanswered requests, finds the same job. A job whose batch ended
    (its answers journaled) yet is asked for again had those requests fail: it is
    submitted anew, as the next round."""
    job = job_key(label, client.name, client.model, list(pending))
    state = load_job(job)
    if state is None and (found := _find(adapter, job)):
        state = JobState(
            job=job,
            label=label,
            provider=client.name,
            model=client.model,
            batch_id=found,
            custom_ids=list(pending),
            submitted_at=datetime.now(UTC).isoformat(timespec="seconds"),
            round=round_,
        )
        save_job(state)
        log.warning("batch %s: found %s, created before its id was saved; not resubmitting",
                    label, found)  # fmt: skip
    if state is None or state.ended:
        items = list(pending.items())
        batch_id = adapter.submit(items, job, batches_dir())
        state = JobState(
            job=job,
            label=label,
            provider=client.name,
            model=client.model,
            batch_id=batch_id,
            custom_ids=[k for k, _ in items],
            submitted_at=datetime.now(UTC).isoformat(timespec="seconds"),
            round=state.round + 1 if state else round_,
        )
        save_job(state)
        log.info("batch %s: submitted %s with %d request(s)", label, batch_id, len(items))
    else:
        log.info("batch %s: resuming %s (submitted %s)", label, state.batch_id, state.submitted_at)
    _waiter(label, state.batch_id)(adapter, state.batch_id, settings, sleep)
    return state, adapter.results(state.batch_id)


def _find(adapter: BatchAdapter, job: str) -> str | None:
    try:
        return adapter.find(job)
    except EndpointDown:
        raise
    except Exception as exc:  # a lookup that fails must not stop a fresh submission
        log.info("batch: could not look for an unsaved batch of %s: %s", job, exc)
        return None


_WAIT_TASK: Any = None


def _waiter(label: str, batch_id: str) -> Callable[..., None]:
    """``_wait`` as a Prefect task run (``batch-wait[stage:id]`` in the UI) when called
    inside a flow, else plainly. Resuming does not rely on Prefect: the batch id is in
    the job's state file, so a retried task or a new flow run finds it either way."""
    global _WAIT_TASK
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return _wait
    if _WAIT_TASK is None:
        from prefect import task
        from prefect.cache_policies import NO_CACHE

        _WAIT_TASK = task(
            name="llm-batch-wait", cache_policy=NO_CACHE, persist_result=False, log_prints=False
        )(_wait)
    return _WAIT_TASK.with_options(task_run_name=f"batch-wait[{label}:{batch_id}]")


def _wait(
    adapter: BatchAdapter, batch_id: str, settings: BatchSettings, sleep: Callable[[float], None]
) -> None:
    delay, waited = settings.poll_initial_s, 0.0
    while True:
        status = adapter.status(batch_id)
        if status.state == "ended":
            return
        if waited >= settings.max_wait_s:
            raise BatchTimeout(
                f"batch {batch_id} still {status.detail or 'running'} after {waited:.0f}s; "
                "run again to resume waiting for it"
            )
        sleep(delay)
        waited += delay
        delay = min(delay * settings.poll_factor, settings.poll_max_s)


def _json_result(result: ChatResult, schema: type[BaseModel], results: list) -> JsonResult:
    if not result.ok:
        return JsonResult(raw=result.text, error=result.error, attempts=len(results),
                          results=results)  # fmt: skip
    value, error = validate(result.text or "", schema)
    return JsonResult(value=value, raw=result.text, error=error, attempts=len(results),
                      results=results)  # fmt: skip


def complete_json_batched(
    spec: ProviderSpec,
    requests: Sequence[ChatRequest],
    schema: type[BaseModel],
    *,
    label: str,
    settings: BatchSettings | None = None,
    max_reasks: int = 2,
    on_result: Callable[[int, ChatResult], None] | None = None,
) -> list[JsonResult]:
    """Structured answers through the batch API, with the live client's re-ask rule: an
    answer that does not fit ``schema`` is asked again with the validation error, up to
    ``max_reasks`` times. Each re-ask round is one more batch job (``<label>-reask<n>``)
    holding only the answers that failed, so a run of mostly valid answers pays for few
    re-asks. ``on_result`` sees the first answers only."""
    first = complete_many_batched(
        spec, requests, label=label, settings=settings, on_result=on_result
    )
    out = [_json_result(r, schema, [r]) for r in first]
    current = list(requests)
    for round_ in range(1, max_reasks + 1):
        again = [i for i, r in enumerate(out) if r.results[-1].ok and r.error is not None]
        if not again:
            break
        for i in again:
            current[i] = reask_request(current[i], out[i].raw or "", out[i].error or "", schema)
        answers = complete_many_batched(
            spec, [current[i] for i in again], label=f"{label}-reask{round_}", settings=settings
        )
        for i, result in zip(again, answers, strict=True):
            out[i] = _json_result(result, schema, [*out[i].results, result])
    return out
