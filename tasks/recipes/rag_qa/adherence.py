"""Context adherence, ChainPoll style: does an answer use only what its context says?

A judge model is asked J times (J independent chain-of-thought judgements: sample
indices 0..J-1 with distinct seeds, so J distinct journaled requests); each vote is yes
(supported) or no. The score is the share of yes among the votes that could be read, and
the explanation kept is that of a vote on the majority's side. A vote that cannot be read
is recorded as malformed with its raw text and does not count; with no readable vote the
row has no score.

Vote 0 of J is the same request as the only vote of J = 1, so scoring with J = 3 after
J = 1 pays for two more votes, not three.

Before any vote is paid for, a check by code (``grounding.py``) looks for numbers and
words the answer brings in from outside its context; an answer that fails it scores 0
with that reason, and no judge is asked. ``grounding_min_share = 0`` turns the check off.

Used by the recipe's adherence stage, by ``winnow adherence`` and by
``benchmarks/adherence.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, Field

from tasks.llm.base import ChatResult
from tasks.llm.structured import extract_json
from tasks.pipeline.llm_stage import Ask, LLMConfig, ask
from tasks.recipes.rag_qa.grounding import Grounding, check_grounding

TEMPLATE = "rag_qa/judge"
_YES = {"yes", "true", "supported", "y"}
_NO = {"no", "false", "unsupported", "not supported", "n"}
_VERDICT = re.compile(
    r"\b(?:supported|verdict|answer)\b\W{0,6}(yes|no|true|false)\b", re.IGNORECASE
)


class ChainPollConfig(BaseModel):
    llm: LLMConfig
    judges: int = Field(3, ge=1, le=10, description="independent judgements (J)")
    grounding_min_share: float = Field(
        0.75,
        ge=0,
        le=1,
        description="check by code first: share of the answer's words found in the context, "
        "and no number from outside it (0: off, every row goes to the judge)",
    )


class Vote(BaseModel):
    supported: bool | None = None  # None: unreadable, or the request failed
    explanation: str = ""
    raw: str | None = None
    error: str = ""


class Adherence(BaseModel):
    score: float | None = None  # share of yes among readable votes, None if none
    explanation: str = ""
    votes: list[Vote] = Field(default_factory=list)
    grounding: Grounding | None = None
    # read from probabilities (``probability.py``): each claim and its P(supported)
    claims: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def n_valid(self) -> int:
        return sum(v.supported is not None for v in self.votes)

    def summary(self) -> dict[str, Any]:
        """What a record carries: score, explanation, and the compact votes."""
        return {
            "score": self.score,
            "explanation": self.explanation,
            "grounding": self.grounding.model_dump() if self.grounding else None,
            "votes": [
                {"supported": v.supported, "explanation": v.explanation, "error": v.error}
                for v in self.votes
            ],
            **({"claims": self.claims} if self.claims else {}),
        }


def _verdict(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        v = value.strip().strip(".").lower()
        if v in _YES:
            return True
        if v in _NO:
            return False
    return None


def parse_vote(text: str | None) -> Vote:
    """A vote from a judge's answer: the JSON object asked for, or failing that a
    ``supported: yes`` / ``verdict: no`` phrase (the last one wins)."""
    if text is None:
        return Vote(error="no answer")
    try:
        data = extract_json(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        verdict = _verdict(data.get("supported", data.get("verdict")))
        reason = data.get("reasoning") or data.get("explanation") or data.get("reason") or ""
        if verdict is not None:
            return Vote(supported=verdict, explanation=str(reason).strip(), raw=text)
    matches = _VERDICT.findall(text)
    if matches:
        explanation = _VERDICT.split(text)[0].strip().strip("{\"',:").strip()
        return Vote(supported=_verdict(matches[-1]), explanation=explanation[:500], raw=text)
    return Vote(raw=text, error="malformed judge output: no yes/no verdict")


def aggregate(votes: Sequence[Vote]) -> Adherence:
    valid = [v for v in votes if v.supported is not None]
    if not valid:
        return Adherence(votes=list(votes))
    score = sum(v.supported for v in valid) / len(valid)  # type: ignore[misc]
    majority = score > 0.5  # a tie keeps the "not supported" explanation (conservative)
    explanation = next(v.explanation for v in valid if v.supported == majority)
    return Adherence(score=round(score, 4), explanation=explanation, votes=list(votes))


def judge_asks(row: dict[str, Any], config: ChainPollConfig) -> list[Ask]:
    """J asks for one ``{"context", "question", "answer"}`` row, each with its own seed."""
    return [Ask(fields=row, sample=j, seed_offset=j) for j in range(config.judges)]


def score_rows(
    rows: Sequence[dict[str, Any]],
    config: ChainPollConfig,
    *,
    label: str = "adherence",
    on_row: Callable[[], None] | None = None,
) -> list[tuple[Adherence, list[ChatResult]]]:
    """Score every row; returns (adherence, the J results) per row, in order. A row that
    fails the grounding check scores 0 with no judge results (nothing was sent for it).
    The votes go through the one door to the LLM, live or batched as ``config.llm`` says."""
    groundings = [grounding_of(row, config) for row in rows]
    judged = [n for n, g in enumerate(groundings) if g is None or g.grounded]
    position = {n: k for k, n in enumerate(judged)}
    asks = [a for n in judged for a in judge_asks(rows[n], config)]
    j = config.judges
    done: dict[int, int] = {}

    def progress(i: int) -> None:
        done[i // j] = done.get(i // j, 0) + 1
        if on_row and done[i // j] == j:
            on_row()

    answers = ask(config.llm, asks, label=label, on_answer=progress)
    out: list[tuple[Adherence, list[ChatResult]]] = []
    for n, grounding in enumerate(groundings):
        if grounding is not None and not grounding.grounded:
            if on_row:
                on_row()
            reason = f"not grounded: {grounding.reason()}"
            out.append((Adherence(score=0.0, explanation=reason, grounding=grounding), []))
            continue
        k = position[n]
        chunk = [a.last for a in answers[k * j : (k + 1) * j]]
        votes = [
            parse_vote(r.text) if r.ok else Vote(error=f"judge request failed: {r.error}")
            for r in chunk
        ]
        out.append((aggregate(votes).model_copy(update={"grounding": grounding}), chunk))
    return out


def grounding_of(row: dict[str, Any], config: ChainPollConfig) -> Grounding | None:
    if config.grounding_min_share <= 0:
        return None
    return check_grounding(
        row["context"], row["question"], row["answer"], config.grounding_min_share
    )
