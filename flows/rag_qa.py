"""RAG QA (seed 004): contexts → questions of several kinds → answers → context adherence
(ChainPoll) → filter → publish. Any LLM stage can go through a batch API (batch=true)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.curation.optional import curate
from tasks.pipeline import Run
from tasks.rag.recipe import RAGQAParams, mix_gate, plan, publish_rag_qa
from tasks.rag.stages import ADHERENCE, ANSWERS, FILTER, PASSAGES, QUESTIONS
from tasks.stage import write_input_shards


@flow(name="rag-qa", log_prints=True)
def rag_qa(params: RAGQAParams = RAGQAParams()) -> dict[str, Any]:  # noqa: B008
    p = plan(params)  # every check that can fail before money is spent
    run = Run("rag-qa", params)
    with run.guard(params.out):
        seeds = write_input_shards(p.seeds, params.shard_size, "rag-qa")
        passages = run.stage(PASSAGES, seeds, p.passages)
        questions = run.stage(QUESTIONS, passages.kept, p.questions)
        mix_gate(run, questions, "rag_qa.questions", p.mix, params.mix_tolerance)
        answers = run.stage(ANSWERS, questions.kept, p.answers)
        run.gate(answers, "rag_qa.answers")
        scored = run.stage(ADHERENCE, answers.kept, p.adherence)
        run.gate(scored, "rag_qa.scored")
        filtered = run.stage(FILTER, scored.kept, p.filter)
        # optional, by parameter: contamination check, near-duplicate and semantic dedup
        curated = curate(run, filtered, p.curation)
        final = curated[-1] if curated else filtered
        mix_gate(run, final, "rag_qa.kept", p.mix, params.mix_tolerance)
        stages = [passages, questions, answers, scored, filtered, *curated]
        return publish_rag_qa(run, params.out, final, stages, params.threshold)
