"""The stages of the RAG QA recipe, as plain functions over a batch of records.

passages → questions (several kinds per passage) → answers → adherence (ChainPoll) →
filter. Each takes rows, a config and a context and returns kept rows, rejections with
a stage and a reason, and the LLM calls it made. Every LLM stage can run live or through
a provider's batch API (``batch`` in its config), with the same results.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, Field

from tasks.generation import LLMConfig, load_pinned, provenance
from tasks.llm.base import ChatRequest, ChatResult
from tasks.llm.batch import BatchSettings, complete, complete_json
from tasks.llm.structured import JsonResult
from tasks.rag.adherence import ChainPollConfig, score_rows
from tasks.rag.contexts import passage_id
from tasks.rag.grounding import abstains
from tasks.rag.kinds import KIND_INSTRUCTIONS, kind_for
from tasks.stage import Stage, StageContext, StageResult


def short_hash(*parts: str, n: int = 12) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:n]


def ask_json(
    config: LLMConfig,
    requests: Sequence[ChatRequest],
    schema: type[BaseModel],
    batch: BatchSettings | None,
    label: str,
    on_result: Callable[..., None] | None = None,
) -> list[JsonResult]:
    """Structured answers, live or through the batch API, re-asked when they do not fit."""
    return complete_json(
        config.provider, requests, schema, batch=batch, label=label, on_result=on_result
    )


# --- 1. passages ---------------------------------------------------------------------------


class PassagesConfig(BaseModel):
    llm: LLMConfig | None = Field(None, description="None: passages come from documents")
    batch: BatchSettings | None = None
    min_words: int = Field(25, ge=1)


def passages_batch(
    rows: list[dict[str, Any]], config: PassagesConfig, ctx: StageContext
) -> StageResult:
    """Document passages pass through; topic rows get a passage written by the model."""
    out = StageResult()
    synthetic = [r for r in rows if not r.get("passage")]
    for row in rows:
        if row.get("passage"):
            ctx.progress()
            out.kept.append(dict(row, origin="document"))
    if not synthetic:
        return out
    if config.llm is None:
        for row in synthetic:
            out.reject(row, ctx.stage, "no passage and no generator configured")
        return out
    template = load_pinned(config.llm)
    requests = [template.request(r, params=config.llm.params) for r in synthetic]
    results = complete(
        config.llm.provider, requests, batch=config.batch, label=ctx.stage,
        on_result=lambda *_: ctx.progress(),
    )  # fmt: skip
    out.add_calls(results, template.name, template.version)
    for row, result in zip(synthetic, results, strict=True):
        if not result.ok:
            out.reject(row, ctx.stage, f"request failed: {result.error}")
            continue
        text = " ".join((result.text or "").split())
        if len(text.split()) < config.min_words:
            out.reject(
                row,
                ctx.stage,
                f"passage too short ({len(text.split())} words)",
                {"raw": result.text},
            )
            continue
        out.kept.append(
            {
                "id": passage_id(text),
                "index": row["index"],
                "source": f"synthetic:{row['topic']}",
                "topic": row["topic"],
                "passage": text,
                "origin": "synthetic",
                "provenance": provenance(ctx, config.llm, result),
            }
        )
    return out


# --- 2. questions --------------------------------------------------------------------------


class QuestionAnswer(BaseModel):
    question: str = Field(min_length=8, description="one question, ending with '?'")


class QuestionsConfig(BaseModel):
    llm: LLMConfig
    per_passage: int = Field(4, ge=1, le=64)
    mix: dict[str, float]
    batch: BatchSettings | None = None


def questions_batch(
    rows: list[dict[str, Any]], config: QuestionsConfig, ctx: StageContext
) -> StageResult:
    """``per_passage`` questions per passage, each of the kind the mix schedules for its
    global slot (passage index × per_passage + slot)."""
    template = load_pinned(config.llm)
    requests, owners = [], []
    for row in rows:
        for slot in range(config.per_passage):
            kind = kind_for(config.mix, int(row.get("index", 0)) * config.per_passage + slot)
            fields = {"passage": row["passage"], "kind": kind.replace("_", "-"),
                      "kind_instruction": KIND_INSTRUCTIONS[kind]}  # fmt: skip
            params = config.llm.params.model_copy(
                update={"seed": (config.llm.params.seed or 0) + slot}
            )
            requests.append(template.request(fields, params=params, sample=slot))
            owners.append((row, slot, kind))
    answers = ask_json(config.llm, requests, QuestionAnswer, config.batch, ctx.stage,
                       on_result=lambda *_: ctx.progress())  # fmt: skip
    out = StageResult(n_in=len(requests))
    seen: set[tuple[str, str]] = set()
    for (passage, slot, kind), answer in zip(owners, answers, strict=True):
        out.add_calls(answer.results, template.name, template.version)
        record = {
            "id": f"{passage['id']}-q{slot}",
            "passage_id": passage["id"],
            "seed_id": passage["id"],
            "source": passage.get("source", ""),
            "topic": passage.get("topic", ""),
            "passage": passage["passage"],
            "kind": kind,
            "slot": slot,
        }
        if not answer.ok:
            out.reject(
                record, ctx.stage, f"malformed model answer: {answer.error}", {"raw": answer.raw}
            )
            continue
        question = " ".join(answer.value["question"].split())  # type: ignore[index]
        if not question.endswith("?"):
            out.reject(dict(record, question=question), ctx.stage, "not a question (no '?')")
            continue
        if (passage["id"], question.lower()) in seen:
            out.reject(
                dict(record, question=question), ctx.stage, "duplicate question for this passage"
            )
            continue
        seen.add((passage["id"], question.lower()))
        record.update(question=question, provenance=provenance(ctx, config.llm, answer.results[-1]))
        out.kept.append(record)
    return out


# --- 3. answers ----------------------------------------------------------------------------


class AnswersConfig(BaseModel):
    llm: LLMConfig
    batch: BatchSettings | None = None
    check_abstention: bool = Field(
        True,
        description="reject an unanswerable question answered as if answerable, and an "
        "answerable one the model declined",
    )


def answers_batch(
    rows: list[dict[str, Any]], config: AnswersConfig, ctx: StageContext
) -> StageResult:
    template = load_pinned(config.llm)
    requests = [
        template.request(
            {"context": r["passage"], "question": r["question"]}, params=config.llm.params
        )
        for r in rows
    ]
    results: list[ChatResult] = complete(
        config.llm.provider, requests, batch=config.batch, label=ctx.stage,
        on_result=lambda *_: ctx.progress(),
    )  # fmt: skip
    out = StageResult()
    out.add_calls(results, template.name, template.version)
    for row, result in zip(rows, results, strict=True):
        if not result.ok:
            out.reject(row, ctx.stage, f"request failed: {result.error}")
            continue
        answer = (result.text or "").strip()
        record = dict(row, answer=answer, abstained=abstains(answer),
                      answer_provenance=provenance(ctx, config.llm, result))  # fmt: skip
        if not answer:
            out.reject(record, ctx.stage, "empty answer")
        elif config.check_abstention and row["kind"] == "unanswerable" and not record["abstained"]:
            out.reject(record, ctx.stage, "unanswerable question answered as if the context said")
        elif config.check_abstention and row["kind"] != "unanswerable" and record["abstained"]:
            out.reject(record, ctx.stage, f"declined a {row['kind']} question the context answers")
        else:
            out.kept.append(record)
    return out


# --- 4. adherence (ChainPoll) ---------------------------------------------------------------


def adherence_batch(
    rows: list[dict[str, Any]], config: ChainPollConfig, ctx: StageContext
) -> StageResult:
    """J votes per row; keeps every row that got a score (the filter stage decides)."""
    triples = [
        {"context": r["passage"], "question": r["question"], "answer": r["answer"]} for r in rows
    ]
    scored = score_rows(triples, config, label=ctx.stage, on_row=ctx.progress)
    template = load_pinned(config.llm)
    out = StageResult()
    for row, (adherence, results) in zip(rows, scored, strict=True):
        out.add_calls(results, template.name, template.version)
        judge = {
            **adherence.summary(),
            "judges": config.judges,
            "provider": results[0].provider if results else config.llm.provider.kind,
            "model": results[0].model if results else config.llm.provider.model,
        }
        record = dict(row, adherence=adherence.score, adherence_judge=judge)
        if adherence.score is None:
            errors = "; ".join(v.error for v in adherence.votes if v.error)[:500]
            raws = [v.raw for v in adherence.votes if v.raw]
            out.reject(record, ctx.stage, f"no readable judge vote: {errors}", {"raw": raws})
        else:
            out.kept.append(record)
    return out


# --- 5. filter -----------------------------------------------------------------------------


class FilterConfig(BaseModel):
    threshold: float = Field(0.67, ge=0.0, le=1.0, description="minimum adherence kept")


def filter_batch(
    rows: list[dict[str, Any]], config: FilterConfig, ctx: StageContext
) -> StageResult:
    out = StageResult()
    for row in rows:
        ctx.progress()
        score = float(row["adherence"])
        if score >= config.threshold:
            out.kept.append(dict(row, supported=True))
        else:
            why = row.get("adherence_judge", {}).get("explanation") or "(no explanation)"
            out.reject(
                dict(row, supported=False),
                ctx.stage,
                f"adherence {score:.2f} < {config.threshold:.2f}: {why}",
                {"adherence": score, "explanation": why},
            )
    return out


PASSAGES = Stage("passages", passages_batch)
QUESTIONS = Stage("questions", questions_batch)
ANSWERS = Stage("answers", answers_batch)
ADHERENCE = Stage("adherence", adherence_batch)
FILTER = Stage("filter", filter_batch)
