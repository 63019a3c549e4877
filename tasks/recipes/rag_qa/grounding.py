"""A check by code, before any judge is paid: does the answer stay within its context's words
and numbers?

A small judge model tends to call every fluent answer "supported". Most hallucinations in
RAG answers bring something in from outside: a number the context never gives, a name, a
place, a reason. This check finds those: it keeps an answer's content words (stop words
dropped, crude suffix stemming) and asks which of them appear in neither the context nor
the question. An answer is grounded when

- at least ``min_share`` of its content words appear in the context or the question, and
- every number it states appears there too, or is one arithmetic step (+, -, ×, ÷) away
  from two numbers that do ("It returns in 2057, 71 years after 1986"), so answers to
  numeric questions computed from the context still pass.

An abstention ("the context does not say") has nothing to ground; the judge decides it.
What this cannot see is a wrong relation between words the context does contain ("autumn
workers live six weeks" when it is summer workers who do): that is the judge's job.
"""

from __future__ import annotations

import re
from itertools import product

from pydantic import BaseModel, Field

_ABSTAIN = re.compile(
    r"\b(context|passage|text)\b[^.]{0,40}\b(does not|doesn't|do not|not)\b[^.]{0,30}"
    r"\b(say|state|mention|contain|provide|specify|include|give)"
    r"|\bnot (mentioned|stated|specified|provided|given) in the (context|passage|text)"
    r"|\bno information\b",
    re.IGNORECASE,
)

_STOP = frozenset(
    """a an the of in on at to for from by with and or but is are was were be been being it
    its this that these those as about than then there their they them he she his her has
    have had do does did not no yes can could would will may might so such into over under
    up down out also each which who whom what when where why how per some any all more most
    less very only just around roughly approximately nearly almost both while between until
    s""".split()
)
_NUMBER_WORDS = {
    "zero": 0, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15,
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "hundred": 100,
    "thousand": 1000, "million": 1_000_000, "twice": 2, "double": 2, "half": 0.5,
    "third": 1 / 3, "quarter": 0.25, "dozen": 12,
}  # fmt: skip
_TOKEN = re.compile(r"\d+(?:\.\d+)?|[a-z]+")


class Grounding(BaseModel):
    grounded: bool
    share: float = Field(description="share of the answer's content words found in context")
    missing_words: list[str] = Field(default_factory=list)
    missing_numbers: list[str] = Field(default_factory=list)
    abstention: bool = False

    def reason(self) -> str:
        parts = []
        if self.missing_numbers:
            parts.append(f"numbers not in the context: {', '.join(self.missing_numbers)}")
        if self.missing_words:
            parts.append(
                f"{self.share:.0%} of the answer's words are in the context; not: "
                + ", ".join(self.missing_words[:12])
            )
        return "; ".join(parts) or "grounded in the context"


def abstains(answer: str) -> bool:
    """Does the answer say the context does not contain the answer?"""
    return bool(_ABSTAIN.search(answer))


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s", "ly"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _tokens(text: str) -> list[str]:
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text.lower())  # 2,000 → 2000
    return [t for t in _TOKEN.findall(text) if t not in _STOP]


def _value(token: str) -> float | None:
    if token[0].isdigit():
        return float(token)
    return _NUMBER_WORDS.get(token)


def _derivable(value: float, known: set[float]) -> bool:
    """Is ``value`` one of the known numbers, or one arithmetic step from two of them?"""

    def close(x: float) -> bool:
        return abs(x - value) <= 1e-6 * max(1.0, abs(value))

    if any(close(k) for k in known):
        return True
    for a, b in product(known, repeat=2):
        if close(a + b) or close(a - b) or close(a * b) or (b and close(a / b)):
            return True
    return False


def check_grounding(context: str, question: str, answer: str, min_share: float = 0.75) -> Grounding:
    if abstains(answer):
        return Grounding(grounded=True, share=1.0, abstention=True)
    source = _tokens(context) + _tokens(question)
    known_words = {_stem(t) for t in source}
    known_numbers = {v for t in source if (v := _value(t)) is not None}
    words = _tokens(answer)
    missing_numbers, missing_words = [], []
    for token in words:
        value = _value(token)
        if value is not None:
            if not _derivable(value, known_numbers) and token not in missing_numbers:
                missing_numbers.append(token)
        elif _stem(token) not in known_words and token not in missing_words:
            missing_words.append(token)
    found = sum(
        1
        for t in words
        if (_value(t) is None and _stem(t) in known_words)
        or (_value(t) is not None and t not in missing_numbers)
    )
    share = found / len(words) if words else 1.0
    return Grounding(
        grounded=share >= min_share and not missing_numbers,
        share=round(share, 4),
        missing_words=missing_words,
        missing_numbers=missing_numbers,
    )
