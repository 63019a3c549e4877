"""Question kinds and the mix that keeps a RAG dataset balanced.

Every question slot gets its kind from a fixed, smooth weighted round-robin schedule
over the global slot number (passage index × questions per passage + slot), so the kinds
of any prefix of the dataset follow the requested mix, whatever the number of passages,
and a re-run assigns the same kinds.
"""

from __future__ import annotations

import math

KIND_INSTRUCTIONS: dict[str, str] = {
    "factual": "a question whose answer is one fact stated in a single sentence of the passage.",
    "multi_hop": (
        "a question that can only be answered by combining facts from two different "
        "sentences of the passage."
    ),
    "numeric": (
        "a question whose answer is a number, date or quantity given in the passage "
        "(or computed from numbers in it)."
    ),
    "unanswerable": (
        "a question on the passage's subject that sounds answerable but whose answer is NOT "
        "in the passage (e.g. a detail it never mentions)."
    ),
}
KINDS = tuple(KIND_INSTRUCTIONS)
DEFAULT_MIX = {"factual": 0.3, "multi_hop": 0.25, "numeric": 0.2, "unanswerable": 0.25}
ABSTAIN = "The context does not say."


def check_mix(mix: dict[str, float]) -> dict[str, float]:
    """The mix normalised to shares summing to 1; raises ValueError on unknown kinds."""
    unknown = sorted(set(mix) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown question kind(s) {unknown}; known: {', '.join(KINDS)}")
    positive = {k: float(v) for k, v in mix.items() if v > 0}
    if not positive:
        raise ValueError("the question mix needs at least one kind with a positive weight")
    total = sum(positive.values())
    return {k: v / total for k, v in positive.items()}


def schedule(mix: dict[str, float], length: int = 100) -> list[str]:
    """Smooth weighted round-robin: over any window the counts stay within one of the
    shares (nginx's algorithm)."""
    shares = check_mix(mix)
    current = dict.fromkeys(shares, 0.0)
    out = []
    for _ in range(length):
        for k, share in shares.items():
            current[k] += share
        best = max(current, key=lambda k: (current[k], -KINDS.index(k)))
        current[best] -= 1.0
        out.append(best)
    return out


def kind_for(mix: dict[str, float], global_slot: int) -> str:
    plan = schedule(mix)
    return plan[global_slot % len(plan)]


def mix_tolerance(share: float, n: int, floor: float) -> float:
    """How far a kind's observed share may stray from its requested share on ``n`` rows:
    the larger of ``floor`` and three binomial standard deviations (on a handful of rows
    the mix cannot be judged, so the check holds)."""
    if n <= 0:
        return 1.0
    return max(floor, 3 * math.sqrt(share * (1 - share) / n))
