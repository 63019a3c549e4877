"""Parameters, plan, gates and publishing of the RAG QA recipe (DAG: flows/rag_qa.py)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator

from tasks.clients import client_for
from tasks.curation.optional import CurationParams, CurationPlan, plan_curation
from tasks.gates.suites import ExpectationSpec, SuiteSpec, check_suites, load_suite
from tasks.generation import LLMConfig, llm_config, load_pinned
from tasks.llm.base import ConfigError, ProviderSpec
from tasks.llm.batch import BatchSettings, check_batch_support
from tasks.pipeline import Run
from tasks.publishing import publish_recipe
from tasks.rag.adherence import TEMPLATE as JUDGE_TEMPLATE
from tasks.rag.adherence import ChainPollConfig
from tasks.rag.contexts import (
    ChunkConfig,
    document_passages,
    example_documents,
    load_topics,
    topic_rows,
)
from tasks.rag.kinds import DEFAULT_MIX, check_mix, mix_tolerance
from tasks.rag.stages import AnswersConfig, FilterConfig, PassagesConfig, QuestionsConfig
from tasks.recipe_params import ProviderParams
from tasks.stage import StageOutput

SUITES = ["rag_qa.questions", "rag_qa.answers", "rag_qa.scored", "rag_qa.kept"]

# Applied by `winnow run rag-qa` on the embedded model when unset: one passage of the
# shipped examples, two questions, so the first run takes minutes on 2 cores.
SMALL_LOCAL_DEFAULTS = {"max_passages": 1, "questions_per_passage": 2, "judges": 3}


class RAGQAParams(CurationParams, ProviderParams):
    """Parameters of the RAG QA recipe (the Prefect UI shows them as a form)."""

    out: str = Field("out/rag-qa", description="output directory (published atomically)")
    documents: str | None = Field(
        None,
        description="folder of .txt/.md/.jsonl, one such file (JSON Lines rows have 'text') "
        "(default: examples/rag unless topics are given)",
    )
    topics: list[str] | str | None = Field(
        None, description="synthetic contexts: topics (a list or a file, one a line)"
    )
    n_synthetic: int = Field(8, ge=1, le=1_000_000, description="synthetic passages to write")
    max_passages: int | None = Field(None, ge=1, description="cap on document passages")
    chunk_words: int = Field(180, ge=20, le=4000, description="words per passage (at most)")
    chunk_overlap: int = Field(30, ge=0, le=2000, description="words shared between passages")
    questions_per_passage: int = Field(4, ge=1, le=64, description="questions per passage")
    question_mix: dict[str, float] = Field(
        dict(DEFAULT_MIX),
        description="weights of question kinds: factual, multi_hop, numeric, unanswerable",
    )
    mix_tolerance: float = Field(
        0.15, ge=0, le=1, description="allowed gap between requested and observed kind shares"
    )
    judges: int = Field(3, ge=1, le=10, description="ChainPoll judgements per answer (J)")
    threshold: float = Field(0.67, ge=0, le=1, description="minimum adherence kept")
    grounding_min_share: float = Field(
        0.75,
        ge=0,
        le=1,
        description="before the judge, a check by code: share of the answer's words found in "
        "the context, and no number from outside it (0: off)",
    )
    judge_max_tokens: int = Field(120, ge=16, le=2048, description="judge output budget")
    batch: bool = Field(False, description="send LLM stages through the provider's batch API")
    batch_poll_s: float = Field(30.0, gt=0, description="first wait between batch polls")
    batch_max_wait_h: float = Field(26.0, gt=0, description="stop waiting (resumable) after")
    shard_size: int = Field(16, ge=1, le=100_000, description="records per task run")
    seed: int = Field(0, description="base sampling seed")

    @field_validator("question_mix")
    @classmethod
    def _mix(cls, value: dict[str, float]) -> dict[str, float]:
        check_mix(value)
        return value

    def batch_settings(self) -> BatchSettings | None:
        if not self.batch:
            return None
        return BatchSettings(
            poll_initial_s=self.batch_poll_s,
            poll_max_s=max(self.batch_poll_s, 300.0),
            max_wait_s=self.batch_max_wait_h * 3600,
        )


class Plan(BaseModel):
    seeds: list[dict[str, Any]]
    passages: PassagesConfig
    questions: QuestionsConfig
    answers: AnswersConfig
    adherence: ChainPollConfig
    filter: FilterConfig
    mix: dict[str, float]
    curation: CurationPlan


def plan(params: RAGQAParams) -> Plan:
    """Every check that can fail before a request is made, and each stage's config."""
    check_suites(SUITES)
    topics = load_topics(params.topics)
    documents = params.documents or (None if topics else str(example_documents()))
    chunk = ChunkConfig(
        size=params.chunk_words, overlap=min(params.chunk_overlap, params.chunk_words - 1)
    )
    if documents:
        seeds = document_passages(documents, chunk, params.max_passages)
    else:
        seeds = topic_rows(topics, params.n_synthetic)
    gen, judge = params.generator(), params.judge()
    batch = params.batch_settings()
    if batch is not None:
        for spec in (gen, judge):
            check_batch_support(spec)
    for spec in {gen.model_dump_json(): gen, judge.model_dump_json(): judge}.values():
        client_for(spec).check()
    seed = params.seed
    return Plan(
        seeds=seeds,
        passages=PassagesConfig(
            llm=None if documents else llm_config(gen, "rag_qa/passage", seed=seed),
            batch=batch,
            min_words=chunk.min_words,
        ),
        questions=QuestionsConfig(
            llm=llm_config(gen, "rag_qa/question", seed=seed),
            per_passage=params.questions_per_passage,
            mix=check_mix(params.question_mix),
            batch=batch,
        ),
        answers=AnswersConfig(llm=llm_config(gen, "rag_qa/answer", seed=seed), batch=batch),
        adherence=ChainPollConfig(
            llm=llm_config(judge, JUDGE_TEMPLATE, seed=seed, max_tokens=params.judge_max_tokens),
            judges=params.judges,
            grounding_min_share=params.grounding_min_share,
            batch=batch,
        ),
        filter=FilterConfig(threshold=params.threshold),
        mix=check_mix(params.question_mix),
        curation=plan_curation(
            params,
            fields=["question", "answer"],
            semantic_field="question",
            score_field="adherence",
        ),
    )


def mix_suite(name: str, mix: dict[str, float], n_rows: int, floor: float) -> SuiteSpec:
    """The suite ``name`` plus, per requested kind, bounds on its share of the rows:
    share >= p - tol (``..._to_be_in_set`` with ``mostly``) and share <= p + tol
    (``..._to_not_be_in_set`` with ``mostly``), tol from :func:`mix_tolerance`."""
    spec = load_suite(name)
    extra = [
        ExpectationSpec(
            type="expect_column_values_to_be_in_set",
            kwargs={"column": "kind", "value_set": list(mix)},
            meta={"why": "only the question kinds that were asked for"},
        )
    ]
    for kind, share in mix.items():
        tol = mix_tolerance(share, n_rows, floor)
        if share - tol > 0:
            extra.append(
                ExpectationSpec(
                    type="expect_column_values_to_be_in_set",
                    kwargs={"column": "kind", "value_set": [kind], "mostly": round(share - tol, 4)},
                    meta={"why": f"at least {share - tol:.0%} {kind} questions"},
                )
            )
        if share + tol < 1:
            extra.append(
                ExpectationSpec(
                    type="expect_column_values_to_not_be_in_set",
                    kwargs={
                        "column": "kind",
                        "value_set": [kind],
                        "mostly": round(1 - share - tol, 4),
                    },
                    meta={"why": f"at most {share + tol:.0%} {kind} questions"},
                )
            )
    return spec.model_copy(update={"expectations": [*spec.expectations, *extra]})


def mix_gate(run: Run, output: StageOutput, name: str, mix: dict[str, float], floor: float):
    return run.gate(output, mix_suite(name, mix, output.n_kept, floor))


def rag_messages(context: str, question: str) -> list[dict[str, str]]:
    """The prompt a RAG model is trained on: the answer template's system instructions,
    then the context and the question (what the answers were generated from)."""
    template = load_pinned(_answer_config())
    return [m.model_dump() for m in template.render({"context": context, "question": question})]


def _answer_config() -> LLMConfig:
    return llm_config(ProviderSpec(), "rag_qa/answer")


def to_example(row: dict[str, Any]) -> dict[str, Any]:
    prompt = rag_messages(row["passage"], row["question"])
    return {
        "id": row["id"],
        "messages": [*prompt, {"role": "assistant", "content": row["answer"]}],
        "response": row["answer"],
        "metadata": {
            "passage_id": row["passage_id"],
            "source": row.get("source", ""),
            "topic": row.get("topic", ""),
            "question": row["question"],
            "question_kind": row["kind"],
            "abstained": bool(row.get("abstained")),
            "adherence": row["adherence"],
            "judge": row.get("adherence_judge", {}),
            "provenance": {
                "question": row.get("provenance", {}),
                "answer": row.get("answer_provenance", {}),
            },
        },
    }


def publish_rag_qa(
    run: Run, out_dir: str, final: StageOutput, stages: list[StageOutput], threshold: float
) -> dict[str, Any]:
    kinds: dict[str, int] = {}
    scores = []
    for r in final.kept_rows(columns=["kind", "adherence"]):
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
        scores.append(float(r["adherence"]))
    return publish_recipe(
        run,
        out_dir,
        final,
        stages,
        to_example,
        summary={
            "out": out_dir,
            "threshold": threshold,
            "kept_by_kind": kinds,
            "mean_adherence": round(sum(scores) / len(scores), 4) if scores else None,
        },
    )


__all__ = ["SMALL_LOCAL_DEFAULTS", "ConfigError", "RAGQAParams", "plan", "publish_rag_qa"]
