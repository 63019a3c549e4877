"""The stages of the RAG QA recipe, as plain functions over a batch of records.

passages → questions (several kinds per passage) → answers → adherence (P(supported) read
from probabilities, or ChainPoll's sampled votes) → filter. Each takes rows, a config and
a context and returns kept rows, rejections with a stage and a reason, and the LLM calls
it made. Their requests go through the one door
to the LLM (:mod:`tasks.pipeline.llm_stage`), live or through a provider's batch API as
the recipe's ``batch`` parameter says, with the same results.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from tasks.curation.coherence import rag_dialog_problems
from tasks.pipeline.llm_stage import (
    Answer,
    Ask,
    LLMConfig,
    Rejected,
    ask_rows,
    llm_stage,
    provenance,
)
from tasks.pipeline.stage import Stage, StageContext, StageResult
from tasks.recipes.rag_qa.adherence import ChainPollConfig, score_rows
from tasks.recipes.rag_qa.grounding import abstains
from tasks.recipes.rag_qa.inputs import passage_id
from tasks.recipes.rag_qa.kinds import KIND_INSTRUCTIONS, kind_for
from tasks.recipes.rag_qa.probability import ProbabilityConfig, score_rows_by_probability

# --- 1. passages ---------------------------------------------------------------------------


class PassagesConfig(BaseModel):
    llm: LLMConfig | None = Field(None, description="None: passages come from documents")
    min_words: int = Field(25, ge=1)


def passages_batch(
    rows: list[dict[str, Any]], config: PassagesConfig, ctx: StageContext
) -> StageResult:
    """Document passages pass through; topic rows get a passage written by the model."""
    out = StageResult()
    out.kept.extend(dict(row, origin="document") for row in rows if row.get("passage"))
    synthetic = [r for r in rows if not r.get("passage")]
    if not synthetic:
        return out
    if config.llm is None:
        for row in synthetic:
            out.reject(row, ctx.stage, "no passage and no generator configured")
        return out
    for row, answer in ask_rows(synthetic, config.llm, ctx, out):
        text = " ".join(answer.text.split())
        if len(text.split()) < config.min_words:
            reason = f"passage too short ({len(text.split())} words)"
            out.reject(row, ctx.stage, reason, {"raw": answer.raw})
            continue
        out.kept.append(
            {
                "id": passage_id(text),
                "index": row["index"],
                "source": f"synthetic:{row['topic']}",
                "source_id": row["id"],  # the topic row it was written from
                "topic": row["topic"],
                "passage": text,
                "origin": "synthetic",
                "provenance": provenance(ctx, config.llm, answer.last),
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


def question_asks(passage: dict[str, Any], config: QuestionsConfig) -> list[Ask]:
    """``per_passage`` questions of a passage, each of the kind the mix schedules for its
    global slot (passage index × per_passage + slot)."""
    asks = []
    for slot in range(config.per_passage):
        kind = kind_for(config.mix, int(passage.get("index", 0)) * config.per_passage + slot)
        fields = {"passage": passage["passage"], "kind": kind.replace("_", "-"),
                  "kind_instruction": KIND_INSTRUCTIONS[kind]}  # fmt: skip
        record = {
            "id": f"{passage['id']}-q{slot}",
            "passage_id": passage["id"],
            "seed_id": passage["id"],
            "source": passage.get("source", ""),
            "source_id": passage.get("source_id", ""),
            "topic": passage.get("topic", ""),
            "passage": passage["passage"],
            "kind": kind,
            "slot": slot,
        }
        asks.append(Ask(fields=fields, sample=slot, seed_offset=slot, record=record))
    return asks


def questions_batch(
    rows: list[dict[str, Any]], config: QuestionsConfig, ctx: StageContext
) -> StageResult:
    plan = [question_asks(row, config) for row in rows]
    out = StageResult(n_in=sum(len(p) for p in plan))
    seen: set[tuple[str, str]] = set()
    answers = ask_rows(rows, config.llm, ctx, out, schema=QuestionAnswer, plan=plan)
    for record, answer in answers:
        question = " ".join(answer.value["question"].split())  # type: ignore[index]
        if not question.endswith("?"):
            out.reject(dict(record, question=question), ctx.stage, "not a question (no '?')")
            continue
        if (record["passage_id"], question.lower()) in seen:
            reason = "duplicate question for this passage"
            out.reject(dict(record, question=question), ctx.stage, reason)
            continue
        seen.add((record["passage_id"], question.lower()))
        record.update(question=question, provenance=provenance(ctx, config.llm, answer.last))
        out.kept.append(record)
    return out


# --- 3. answers ----------------------------------------------------------------------------


class AnswersConfig(BaseModel):
    llm: LLMConfig
    check_abstention: bool = Field(
        True,
        description="reject an unanswerable question answered as if answerable, and an "
        "answerable one the model declined",
    )


def answer_asks(row: dict[str, Any], config: AnswersConfig) -> list[Ask]:
    return [Ask(fields={"context": row["passage"], "question": row["question"]})]


def parse_answer(
    row: dict[str, Any], answer: Answer, config: AnswersConfig
) -> dict[str, Any] | Rejected:
    text = answer.text.strip()
    record = dict(row, answer=text, abstained=abstains(text))
    if not text:
        return Rejected("empty answer", record=record)
    if config.check_abstention and row["kind"] == "unanswerable" and not record["abstained"]:
        return Rejected("unanswerable question answered as if the context said", record=record)
    if config.check_abstention and row["kind"] != "unanswerable" and record["abstained"]:
        return Rejected(f"declined a {row['kind']} question the context answers", record=record)
    incoherent = rag_dialog_problems(row["question"], row["kind"], text, record["abstained"])
    if incoherent:
        return Rejected("incoherent: " + "; ".join(incoherent), record=record)
    return record


# --- 4. adherence -----------------------------------------------------------------------


def adherence_batch(
    rows: list[dict[str, Any]], config: ChainPollConfig | ProbabilityConfig, ctx: StageContext
) -> StageResult:
    """A score per row, by J votes (ChainPoll) or by the probability of each claim; keeps
    every row that got one (the filter stage decides)."""
    triples = [
        {"context": r["passage"], "question": r["question"], "answer": r["answer"]} for r in rows
    ]
    if isinstance(config, ProbabilityConfig):
        scored = score_rows_by_probability(triples, config)
        spec, method, judges = config.scorer, "probability", None
        template, version = "score/choice", "1"
        for _ in rows:
            ctx.progress()
    else:
        scored = score_rows(triples, config, label=ctx.stage, on_row=ctx.progress)
        spec, method, judges = config.llm.provider, "votes", config.judges
        template, version = config.llm.template, config.llm.template_version
    out = StageResult()
    for row, (adherence, results) in zip(rows, scored, strict=True):
        out.add_calls(results, template, version)
        judge = {
            **adherence.summary(),
            "method": method,
            "judges": judges,
            "provider": results[0].provider if results else spec.kind,
            "model": results[0].model if results else spec.model,
        }
        record = dict(row, adherence=adherence.score, adherence_judge=judge)
        if adherence.score is None:
            errors = "; ".join(v.error for v in adherence.votes if v.error)[:500]
            raws = [v.raw for v in adherence.votes if v.raw]
            why = errors or adherence.explanation[:500]
            out.reject(record, ctx.stage, f"no readable judge vote: {why}", {"raw": raws})
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
ANSWERS = llm_stage("answers", parse_answer, asks=answer_asks, provenance_field="answer_provenance")
ADHERENCE = Stage("adherence", adherence_batch)
FILTER = Stage("filter", filter_batch)
