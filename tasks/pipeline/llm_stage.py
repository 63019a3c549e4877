"""The one door to the LLM for stages: a template, an answer schema and a ``parse``.

A recipe declares an LLM stage with :func:`llm_stage`: which rows ask what
(``asks``, default one request per row filled from the row), the pydantic ``schema`` of a
structured answer (``None``: free text) and ``parse(record, answer, config)``, which
returns the record to keep or :class:`Rejected` with a reason. The base does the rest,
the same way for every recipe:

- loads the template at the version the run pinned, and builds the requests;
- sends them live through the process's shared client (journaled, rate-adaptive,
  retried) or, when the config carries batch settings, through the provider's batch
  API; structured answers that do not fit the schema are re-asked with the error;
- counts progress by input row as the answers arrive;
- records every call (tokens, cost, the journal key) for the catalog;
- rejects a request that failed for good or an answer that never fit, with the raw text;
- stamps provenance (run, stage, template and version, provider, model, parameters,
  round, request key) on every record it passes on.

Stages that need more than one answer per decision (ChainPoll votes, revision rounds)
call :func:`ask` or :func:`ask_rows` themselves: the same door, one level down.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from tasks.core.records import Provenance
from tasks.llm import prompts
from tasks.llm.base import ChatRequest, ChatResult, GenerationParams, ProviderSpec
from tasks.llm.batch.api import BatchSettings
from tasks.llm.batch.jobs import complete_json_batched, complete_many_batched
from tasks.llm.clients import client_for
from tasks.llm.structured import JsonResult
from tasks.pipeline.stage import Stage, StageContext, StageResult


class LLMConfig(BaseModel):
    """What an LLM stage needs: provider, template (name and pinned version), sampling,
    and batch settings (``None``: live requests)."""

    provider: ProviderSpec
    template: str
    template_version: str
    params: GenerationParams
    batch: BatchSettings | None = None


def llm_config(
    provider: ProviderSpec,
    template_name: str,
    *,
    batch: BatchSettings | None = None,
    **overrides: Any,
) -> LLMConfig:
    """Load a template and pin its version; ``overrides`` replace its default params."""
    template = prompts.load(template_name)
    given = {k: v for k, v in overrides.items() if v is not None}
    return LLMConfig(
        provider=provider,
        template=template.name,
        template_version=template.version,
        params=GenerationParams(**{**template.params.model_dump(), **given}),
        batch=batch,
    )


def load_pinned(config: LLMConfig) -> prompts.PromptTemplate:
    """The template a config was made with; refuses one whose version changed since."""
    template = prompts.load(config.template)
    if template.version != config.template_version:
        raise prompts.PromptError(
            f"template {config.template!r} changed from v{config.template_version} "
            f"to v{template.version} during the run"
        )
    return template


def provenance(
    ctx: StageContext, config: LLMConfig, result: ChatResult, round_: int | None = None
) -> dict[str, Any]:
    """Where a record came from: the run, the stage, the template and the model."""
    return Provenance(
        run_id=ctx.run.run_id,
        recipe=ctx.run.recipe,
        stage=ctx.stage,
        template=config.template,
        template_version=config.template_version,
        provider=result.provider or config.provider.kind,
        model=result.model or config.provider.model,
        params=config.params.model_dump(),
        round=ctx.run.round if round_ is None else round_,
        request_key=result.key,
        mean_logprob=round(result.logprobs.mean_logprob, 6) if result.logprobs else None,
        perplexity=round(result.logprobs.perplexity, 6) if result.logprobs else None,
    ).to_json()


# --- requests and answers -------------------------------------------------------------------


@dataclass
class Ask:
    """One request of a row: the ``fields`` that fill the template, the draw ``sample``
    (two draws of one prompt are two requests), an optional ``seed_offset`` added to the
    config's seed, and the ``record`` the answer will be parsed into (default: the row)."""

    fields: dict[str, Any]
    sample: int = 0
    seed_offset: int | None = None
    record: dict[str, Any] | None = None


@dataclass
class Answer:
    """One answered :class:`Ask`: every request it took (re-asks included), the validated
    JSON ``value`` of a structured answer, and the ``error`` when it has none to use."""

    results: list[ChatResult]
    value: dict[str, Any] | None = None
    error: str | None = None
    ask: Ask | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def last(self) -> ChatResult:
        return self.results[-1]

    @property
    def text(self) -> str:
        return self.last.text or ""

    @property
    def raw(self) -> str | None:
        return self.last.text

    @property
    def request_failed(self) -> bool:
        """The request itself failed (after its retries), as opposed to an unusable answer."""
        return not self.last.ok


def _request(template: prompts.PromptTemplate, config: LLMConfig, ask: Ask) -> ChatRequest:
    params = config.params
    if ask.seed_offset is not None:
        params = params.model_copy(update={"seed": (params.seed or 0) + ask.seed_offset})
    return template.request(ask.fields, params=params, sample=ask.sample)


def ask(
    config: LLMConfig,
    asks: Sequence[Ask],
    *,
    label: str,
    schema: type[BaseModel] | None = None,
    on_answer: Callable[[int], None] | None = None,
) -> list[Answer]:
    """Answer every ask, in order, live or through the batch API as ``config`` says.
    ``label`` names the caller (the stage) in batch job keys; ``on_answer(i)`` is called
    as the first answer of ask ``i`` arrives. Never raises per request."""
    if not asks:
        return []
    template = load_pinned(config)
    requests = [_request(template, config, a) for a in asks]

    def first(i: int, _result: Any) -> None:
        if on_answer is not None:
            on_answer(i)

    if schema is None:
        results = _complete(config, requests, label, first)
        return [Answer([r], error=r.error, ask=a) for r, a in zip(results, asks, strict=True)]
    answers = _complete_json(config, requests, schema, label, first)
    return [
        Answer(list(j.results), value=j.value, error=j.error, ask=a)
        for j, a in zip(answers, asks, strict=True)
    ]


def _complete(
    config: LLMConfig, requests: list[ChatRequest], label: str, on_result: Callable
) -> list[ChatResult]:
    if config.batch is None:
        return client_for(config.provider).complete_many(requests, on_result=on_result)
    return complete_many_batched(
        config.provider, requests, label=label, settings=config.batch, on_result=on_result
    )


def _complete_json(
    config: LLMConfig,
    requests: list[ChatRequest],
    schema: type[BaseModel],
    label: str,
    on_result: Callable,
) -> list[JsonResult]:
    if config.batch is None:
        client = client_for(config.provider)
        return client.complete_json(requests, schema, on_result=on_result)
    return complete_json_batched(
        config.provider, requests, schema, label=label, settings=config.batch,
        on_result=on_result,
    )  # fmt: skip


def ask_rows(
    rows: list[dict[str, Any]],
    config: LLMConfig,
    ctx: StageContext,
    out: StageResult,
    *,
    schema: type[BaseModel] | None = None,
    plan: list[list[Ask]] | None = None,
    malformed: str = "malformed model answer",
) -> Iterator[tuple[dict[str, Any], Answer]]:
    """Ask for every row (``plan[i]``: the asks of row ``i``; default one request filled
    from the row's fields) and yield ``(record, answer)`` for each usable answer, in order.
    Calls are recorded into ``out``, progress is counted by row, and unusable answers are
    rejected into ``out``: a failed request as ``"request failed: <why>"``, an answer that
    never fit ``schema`` as ``"<malformed>: <why>"`` with the raw text in the detail."""
    if plan is None:
        plan = [[Ask(fields=row)] for row in rows]
    owners = [(r, a) for r, row_asks in enumerate(plan) for a in row_asks]
    remaining = [len(row_asks) for row_asks in plan]
    for n in remaining:
        if n == 0:
            ctx.progress()  # nothing to ask for this row

    def answered(i: int) -> None:
        r = owners[i][0]
        remaining[r] -= 1
        if remaining[r] == 0:
            ctx.progress()

    answers = ask(config, [a for _, a in owners], label=ctx.stage, schema=schema,
                  on_answer=answered)  # fmt: skip
    for (r, a), answer in zip(owners, answers, strict=True):
        out.add_calls(answer.results, config.template, config.template_version)
        record = a.record if a.record is not None else rows[r]
        if answer.request_failed:
            out.reject(record, ctx.stage, f"request failed: {answer.last.error}")
        elif not answer.ok:
            out.reject(record, ctx.stage, f"{malformed}: {answer.error}", {"raw": answer.raw})
        else:
            yield record, answer


# --- the declared stage ---------------------------------------------------------------------


@dataclass(frozen=True)
class Rejected:
    """What ``parse`` returns to turn a record away: the reason, the details, and the
    record to file (default: the one it was given)."""

    reason: str
    detail: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] | None = None


Parse = Callable[[dict[str, Any], Answer, Any], "dict[str, Any] | Rejected"]


def stage_llm(config: Any) -> LLMConfig:
    """The LLM part of a stage's config: the config itself, or its ``llm`` field."""
    return config if isinstance(config, LLMConfig) else config.llm


def _run_llm_stage(
    parse: Parse,
    schema: type[BaseModel] | None,
    asks: Callable[[dict[str, Any], Any], list[Ask]] | None,
    malformed: str,
    provenance_field: str | None,
    rows: list[dict[str, Any]],
    config: Any,
    ctx: StageContext,
) -> StageResult:
    llm = stage_llm(config)
    plan = None if asks is None else [asks(row, config) for row in rows]
    out = StageResult()
    if plan is not None:
        out.n_in = sum(max(1, len(row_asks)) for row_asks in plan)
        out.kept.extend(row for row, row_asks in zip(rows, plan, strict=True) if not row_asks)
    answers = ask_rows(rows, llm, ctx, out, schema=schema, plan=plan, malformed=malformed)
    for record, answer in answers:
        if provenance_field:
            record = dict(record, **{provenance_field: provenance(ctx, llm, answer.last)})
        decision = parse(record, answer, config)
        if isinstance(decision, Rejected):
            target = decision.record if decision.record is not None else record
            out.reject(target, ctx.stage, decision.reason, decision.detail or None)
        else:
            out.kept.append(decision)
    return out


def llm_stage(
    name: str,
    parse: Parse,
    *,
    schema: type[BaseModel] | None = None,
    asks: Callable[[dict[str, Any], Any], list[Ask]] | None = None,
    malformed: str = "malformed model answer",
    provenance_field: str | None = "provenance",
    version: str = "1",
) -> Stage:
    """Declare an LLM stage. Its config is an :class:`LLMConfig`, or a model whose ``llm``
    field is one (for settings ``parse`` needs, such as a judge's pass mark).

    - ``asks(row, config)``: the requests of a row (default: one, filled from the row);
      a row with several counts each as one unit in the funnel; a row with none passes
      on untouched.
    - ``schema``: the answer is JSON validated against it (re-asked when it does not
      fit); ``answer.value`` holds it. ``None``: free text in ``answer.text``.
    - ``parse(record, answer, config)``: the record to keep, or :class:`Rejected`.
    - ``provenance_field``: where the provenance goes (``None``: nowhere).

    The stage's cache key hashes ``parse``, ``asks`` and ``schema`` (and what they use
    in their module), so editing one stage's parsing re-runs only that stage onward.
    """
    fn = functools.partial(_run_llm_stage, parse, schema, asks, malformed, provenance_field)
    return Stage(name=name, fn=fn, version=version, code=(parse, asks, schema))


def judge_stage(
    name: str,
    parse: Parse,
    *,
    schema: type[BaseModel],
    malformed: str = "judge answer malformed",
    version: str = "1",
) -> Stage:
    """An LLM stage that judges records rather than writes them: its verdict goes into
    the record, which keeps the provenance of what made it."""
    return llm_stage(
        name, parse, schema=schema, malformed=malformed, provenance_field=None, version=version
    )
