"""Parameters, plan, gates and examples of the RAG QA recipe (DAG: flows/rag_qa.py)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator

from tasks.core.seeds import load_topics
from tasks.curation.optional import CurationParams, CurationPlan, plan_curation, scores_of
from tasks.curation.rubric_feedback import Criterion, Rubric
from tasks.gates.gx import GateResult, check_suites
from tasks.gates.suites import ExpectationSpec, SuiteSpec, load_suite
from tasks.llm.base import ConfigError, ProviderSpec
from tasks.pipeline.llm_stage import LLMConfig, llm_config, load_pinned
from tasks.pipeline.params import CardParams, ProviderParams
from tasks.pipeline.run import Run
from tasks.pipeline.stage import StageOutput
from tasks.recipes.rag_qa.adherence import TEMPLATE as JUDGE_TEMPLATE
from tasks.recipes.rag_qa.adherence import ChainPollConfig
from tasks.recipes.rag_qa.inputs import (
    ChunkConfig,
    document_passages,
    example_documents,
    topic_rows,
)
from tasks.recipes.rag_qa.kinds import DEFAULT_MIX, check_mix, mix_tolerance
from tasks.recipes.rag_qa.probability import (
    CALIBRATED_THRESHOLD,
    Method,
    ProbabilityConfig,
    resolve_method,
)
from tasks.recipes.rag_qa.stages import (
    AnswersConfig,
    FilterConfig,
    PassagesConfig,
    QuestionsConfig,
)

SUITES = ["rag_qa.questions", "rag_qa.answers", "rag_qa.scored", "rag_qa.kept"]

# Applied by `winnow run rag-qa` on the embedded model when unset: one passage of the
# shipped examples, two questions, so the first run takes minutes on 2 cores.
SMALL_LOCAL_DEFAULTS = {"max_passages": 1, "questions_per_passage": 2}


class RAGQAParams(CurationParams, ProviderParams, CardParams):
    """Parameters of the RAG QA recipe (the Prefect UI shows them as a form)."""

    out: str = Field("out/rag-qa", description="output directory (published atomically)")
    documents: str | None = Field(
        None,
        description="a folder of .txt/.md files and tables, one such file, or a table: JSON "
        "Lines, Parquet, CSV or a saved datasets folder (default unless topics are given: "
        f"the shipped examples, {example_documents()})",
    )
    document_field: str = Field("text", description="the field of a table's rows with the text")
    topics: list[str] | str | None = Field(
        None, description="synthetic contexts: topics (a list or a file, one a line)"
    )
    n_synthetic: int = Field(8, ge=1, le=1_000_000, description="synthetic passages to write")
    max_passages: int | None = Field(
        None, ge=1, description="cap on document passages (default: all)"
    )
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
    adherence_method: Method = Field(
        "auto",
        description="how answers are scored for context adherence: probability (P(yes) per "
        "claim read from the judge's log-probabilities, one read each, no sampling), votes "
        "(ChainPoll: J sampled judgements), or auto: probability on the embedded model, "
        "votes on any other provider",
    )
    judges: int = Field(3, ge=1, le=10, description="ChainPoll judgements per answer (J)")
    threshold: float = Field(0.67, ge=0, le=1, description="minimum adherence kept (votes)")
    probability_threshold: float = Field(
        CALIBRATED_THRESHOLD,
        ge=0,
        le=1,
        description="minimum adherence kept (probability): the weakest claim's P(supported); "
        "the default was calibrated on benchmarks/data/adherence_labelled.jsonl",
    )
    grounding_min_share: float = Field(
        0.75,
        ge=0,
        le=1,
        description="before the judge, a check by code: share of the answer's words found in "
        "the context, and no number from outside it (0: off)",
    )
    judge_max_tokens: int = Field(120, ge=16, le=2048, description="judge output budget")
    seed: int = Field(0, description="base sampling seed")

    @field_validator("question_mix")
    @classmethod
    def _mix(cls, value: dict[str, float]) -> dict[str, float]:
        check_mix(value)
        return value


class Plan(BaseModel):
    seeds: list[dict[str, Any]]
    passages: PassagesConfig
    questions: QuestionsConfig
    answers: AnswersConfig
    adherence: ChainPollConfig | ProbabilityConfig
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
        seeds = document_passages(documents, chunk, params.max_passages, params.document_field)
    else:
        seeds = topic_rows(topics, params.n_synthetic)
    params.check_providers()
    seed = params.seed
    judge = params.judge()
    try:
        method = resolve_method(params.adherence_method, judge.kind)
    except ValueError as exc:
        raise ConfigError(f"adherence_method: {exc}") from None
    if method == "probability":
        adherence: ChainPollConfig | ProbabilityConfig = ProbabilityConfig(scorer=judge)
        threshold = params.probability_threshold
    else:
        adherence = ChainPollConfig(
            llm=params.judge_llm(JUDGE_TEMPLATE, seed=seed, max_tokens=params.judge_max_tokens),
            judges=params.judges,
            grounding_min_share=params.grounding_min_share,
        )
        threshold = params.threshold
    return Plan(
        seeds=seeds,
        passages=PassagesConfig(
            llm=None if documents else params.generator_llm("rag_qa/passage", seed=seed),
            min_words=chunk.min_words,
        ),
        questions=QuestionsConfig(
            llm=params.generator_llm("rag_qa/question", seed=seed),
            per_passage=params.questions_per_passage,
            mix=check_mix(params.question_mix),
        ),
        answers=AnswersConfig(llm=params.generator_llm("rag_qa/answer", seed=seed)),
        adherence=adherence,
        filter=FilterConfig(threshold=threshold),
        mix=check_mix(params.question_mix),
        curation=plan_curation(
            params,
            fields=["question", "answer"],
            semantic_field="question",
            score_field="adherence",
            rubric=rubric(threshold),
        ),
    )


def rubric(threshold: float) -> Rubric:
    """The adherence judge's criteria, as the filter stage applies them: the check by code
    (grounding; for the probability method only its number veto; no verdict when it is
    off) and the adherence score against the method's threshold."""
    return Rubric(
        stage="filter",
        criteria=[
            Criterion(name="grounding", field="adherence_judge.grounding.grounded", passes=[True]),
            Criterion(name="adherence", field="adherence", min=threshold, after="grounding"),
        ],
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


def mix_gate(
    run: Run, output: StageOutput, name: str, mix: dict[str, float], floor: float
) -> GateResult:
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
            "source_id": row.get("source_id", ""),
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
            **scores_of(row),  # metadata.ifd / metadata.utility, where curation scored
        },
    }


def publish_rag_qa(
    run: Run, final: StageOutput, threshold: float, feedback: dict[str, Any] | None = None
) -> dict[str, Any]:
    kinds: dict[str, int] = {}
    scores = []
    for r in final.kept_rows(columns=["kind", "adherence"]):
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
        scores.append(float(r["adherence"]))
    return run.publish(
        final,
        to_example,
        summary={
            "threshold": threshold,
            "kept_by_kind": kinds,
            "mean_adherence": round(sum(scores) / len(scores), 4) if scores else None,
            **({"rubric_feedback": feedback} if feedback is not None else {}),
        },
    )


__all__ = ["SMALL_LOCAL_DEFAULTS", "ConfigError", "RAGQAParams", "plan", "publish_rag_qa"]
