"""Context adherence read from probabilities, in the style of MiniCheck (Tang et al.,
"MiniCheck: Efficient Fact-Checking of LLMs on Grounding Documents", 2024): each sentence
of the answer is a claim; the scorer model is shown "Document … Question … Claim …" and
asked whether the claim is supported, and instead of sampling a verdict the probability
it gives the answer "yes" against "no" is read at the next token (one decode, no
generation). The answer scores its weakest claim's P(supported).

An answer that abstains ("the context does not say") makes no claim about the world: it is
supported when the document does not answer the question, so its score is P(no) to
"Does the document answer the question?".

The check by code only vetoes what it is sure of: a number in the answer that is not in,
or derivable from, the context and question scores 0 (no model call). Word overlap does
not veto here: paraphrase is the scorer's job.

Any provider with log-probabilities of a given text scores (``tasks.llm.scoring``: the
embedded model; an OpenAI-compatible ``/completions`` endpoint); every read is journaled.
ChainPoll's sampled votes (``adherence.py``) remain for providers without them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from tasks.llm.base import ChatResult, ProviderSpec
from tasks.llm.scoring import scorer_for
from tasks.recipes.rag_qa.adherence import Adherence
from tasks.recipes.rag_qa.grounding import abstains, check_grounding

YES = ("Yes", "yes")
NO = ("No", "no")
# The threshold `calibrate_threshold` chose on the tuning set
# (benchmarks/data/adherence_labelled.jsonl) with the embedded model; applied unchanged to
# every other set (benchmarks/README.md).
CALIBRATED_THRESHOLD = 0.63
# Providers that return the log-probabilities of a given text (tasks.llm.scoring).
SCORING_PROVIDERS = ("local", "openai-compatible")
Method = Literal["auto", "votes", "probability"]
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


class ProbabilityConfig(BaseModel):
    scorer: ProviderSpec = Field(default_factory=ProviderSpec)
    max_claims: int = Field(6, ge=1, description="sentences scored apart; the rest joined")
    veto_numbers: bool = Field(True, description="a number absent from the context scores 0")


class ClaimScore(BaseModel):
    claim: str
    p_supported: float | None = None
    error: str = ""


def split_claims(answer: str, max_claims: int = 6) -> list[str]:
    """The answer's sentences (the last one holds whatever exceeds ``max_claims``)."""
    parts = [p.strip() for p in _SENTENCE.split(answer.strip()) if p.strip()]
    if not parts:
        return [answer.strip()] if answer.strip() else []
    if len(parts) > max_claims:
        parts = parts[: max_claims - 1] + [" ".join(parts[max_claims - 1 :])]
    return parts


def resolve_method(method: Method, provider: str) -> Literal["votes", "probability"]:
    """``auto``: probabilities where the provider surely has them (the embedded model),
    sampled votes elsewhere (an OpenAI-compatible server may lack ``echo`` logprobs, so it
    is chosen by name). ``probability`` with a provider that cannot score is an error."""
    if method == "auto":
        return "probability" if provider == "local" else "votes"
    if method == "probability" and provider not in SCORING_PROVIDERS:
        raise ValueError(
            f"adherence by probability needs log-probabilities of a given text: "
            f"{' or '.join(SCORING_PROVIDERS)}, not {provider!r} (use votes)"
        )
    return method


def claim_prompt(context: str, question: str, claim: str) -> str:
    """The ChatML prompt whose next token is the verdict."""
    user = (
        f"Document: {context}\n\nQuestion: {question}\n\nClaim: {claim}\n\n"
        "Is the claim supported by the document? Answer yes or no."
    )
    return _chatml(user)


def abstention_prompt(context: str, question: str) -> str:
    """The ChatML prompt whose next token says whether the document answers at all."""
    user = (
        f"Document: {context}\n\nQuestion: {question}\n\n"
        "Does the document contain the answer to the question? Answer yes or no."
    )
    return _chatml(user)


def _chatml(user: str) -> str:
    return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def p_supported(logprobs: Sequence[float]) -> float:
    """P(yes) / (P(yes) + P(no)) from the log-probabilities of YES + NO, in order."""
    top = max(logprobs)
    probs = [math.exp(v - top) for v in logprobs]
    yes = sum(probs[: len(YES)])
    return yes / (yes + sum(probs[len(YES) :]))


def score_rows_by_probability(
    rows: Sequence[dict[str, Any]], config: ProbabilityConfig
) -> list[tuple[Adherence, list[ChatResult]]]:
    """Score ``{"context", "question", "answer"}`` rows; per row its adherence (score:
    the weakest claim's P(supported); ``claims``: each one's) and the scoring calls."""
    vetoes = []
    for row in rows:
        grounding = check_grounding(row["context"], row["question"], row["answer"], 0.0)
        vetoes.append(grounding if config.veto_numbers and grounding.missing_numbers else None)
    abstaining = [abstains(row["answer"]) for row in rows]
    claims = [
        [] if veto is not None else [row["answer"].strip()] if abstain
        else split_claims(row["answer"], config.max_claims)
        for row, veto, abstain in zip(rows, vetoes, abstaining, strict=True)
    ]  # fmt: skip
    items = [
        (
            abstention_prompt(row["context"], row["question"])
            if abstain
            else claim_prompt(row["context"], row["question"], claim),
            [*YES, *NO],
        )
        for row, row_claims, abstain in zip(rows, claims, abstaining, strict=True)
        for claim in row_claims
    ]
    scored = scorer_for(config.scorer).choose_many(items) if items else []
    out: list[tuple[Adherence, list[ChatResult]]] = []
    at = 0
    for veto, row_claims, abstain in zip(vetoes, claims, abstaining, strict=True):
        if veto is not None:
            reason = f"not grounded: {veto.reason()}"
            out.append((Adherence(score=0.0, explanation=reason, grounding=veto), []))
            continue
        reads = scored[at : at + len(row_claims)]
        at += len(row_claims)
        per_claim = [
            ClaimScore(claim=c, p_supported=round(_supported(s.logprobs, abstain), 4))
            if s.logprobs
            else ClaimScore(claim=c, error=s.error or "no score")
            for c, s in zip(row_claims, reads, strict=True)
        ]
        valid = [c for c in per_claim if c.p_supported is not None]
        if not valid or len(valid) < len(per_claim):
            errors = "; ".join(c.error for c in per_claim if c.error)
            adherence = Adherence(explanation=f"scoring failed: {errors}")
        else:
            weakest = min(valid, key=lambda c: c.p_supported or 0.0)
            adherence = Adherence(
                score=weakest.p_supported,
                explanation=f"weakest claim P(supported)={weakest.p_supported:.2f}: "
                f"{weakest.claim[:200]}",
            )
        adherence.claims = [c.model_dump() for c in per_claim]
        out.append((adherence, [s.result for s in reads]))
    return out


def _supported(logprobs: Sequence[float], abstain: bool) -> float:
    """A claim: P(yes, supported). An abstention: P(no, the document does not answer)."""
    p_yes = p_supported(logprobs)
    return 1.0 - p_yes if abstain else p_yes


def calibrate_threshold(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """The threshold (supported iff score >= it) with the highest accuracy on labelled
    rows; among equally accurate ones the middle of the widest gap between scores."""
    points = sorted(set(scores))
    if not points:
        return 0.5
    candidates = [points[0]] + [(a + b) / 2 for a, b in zip(points, points[1:], strict=False)]
    candidates.append(points[-1] + 1e-9)

    def accuracy(t: float) -> int:
        return sum((s >= t) == y for s, y in zip(scores, labels, strict=True))

    best = max(accuracy(t) for t in candidates)
    winners = [t for t in candidates if accuracy(t) == best]
    return round(winners[len(winners) // 2], 4)
