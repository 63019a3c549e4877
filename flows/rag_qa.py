"""RAG QA (seed 004): contexts → questions of several kinds → answers → context adherence
(P(supported) per claim, or ChainPoll votes) → filter → publish. Any recipe's LLM stages
can go through a batch API (batch=true); this one is built for it."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.registry import Recipe
from tasks.curation.optional import curate, rubric_feedback_of
from tasks.pipeline.run import Run
from tasks.recipes.rag_qa.recipe import RAGQAParams, mix_gate, plan, publish_rag_qa
from tasks.recipes.rag_qa.stages import ADHERENCE, ANSWERS, FILTER, PASSAGES, QUESTIONS

RECIPE = Recipe(
    name="rag-qa",
    module=__name__,
    flow_attr="rag_qa",
    params_path="tasks.recipes.rag_qa.recipe:RAGQAParams",
    summary="contexts → questions by kind → answers → context adherence → filter",
)


@flow(name=RECIPE.name, log_prints=True)
def rag_qa(params: RAGQAParams = RAGQAParams()) -> dict[str, Any]:  # noqa: B008
    with Run(RECIPE.name, params) as run:  # a failed check is recorded as a failed run
        p = plan(params)  # every check that can fail before money is spent
        seeds = run.inputs(p.seeds)
        passages = run.stage(PASSAGES, seeds, p.passages)
        questions = run.stage(QUESTIONS, passages.kept, p.questions)
        mix_gate(run, questions, "rag_qa.questions", p.mix, params.mix_tolerance)
        answers = run.stage(ANSWERS, questions.kept, p.answers)
        run.gate(answers, "rag_qa.answers")
        scored = run.stage(ADHERENCE, answers.kept, p.adherence)
        run.gate(scored, "rag_qa.scored")
        filtered = run.stage(FILTER, scored.kept, p.filter)
        # optional, by parameter: contamination check, near-duplicate and semantic dedup
        final = curate(run, filtered, p.curation)
        mix_gate(run, final, "rag_qa.kept", p.mix, params.mix_tolerance)
        feedback = rubric_feedback_of(run, filtered, p.curation)  # optional: judge vs scores
        return publish_rag_qa(run, final, p.filter.threshold, feedback)
