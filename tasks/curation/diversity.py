"""How diverse a set of texts is (a run's problems, say), as figures a gate can check.

- ``distinct_1`` / ``distinct_2``: distinct words and word pairs over all of them (Li et
  al. 2016's distinct-n): 1.0 when no word pair repeats, low when the texts reuse the
  same phrasing.
- ``spread``: 1 - the mean cosine similarity of MiniLM sentence vectors between every
  two texts (0: all say the same; unrelated texts score about 0.8-0.9). For unit vectors
  the mean over pairs is ``(|sum|^2 - n) / (n (n - 1))``, so it needs one running sum.
- ``near_duplicate_share``: the share of texts whose vector is within ``cosine`` of an
  earlier one (what semantic dedup at that threshold would remove).

The vectors of at most ``cap`` texts are compared (the first ones), so the report costs
the same however large the run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Protocol

import numpy as np

from tasks.gates.suites import SuiteSpec

_WORD = re.compile(r"\w+")
MIN_TEXTS = 4  # fewer say nothing about a run's diversity


class Embedder(Protocol):
    def embed(self, texts: list[str]) -> np.ndarray: ...


def distinct_n(texts: list[str], n: int) -> float:
    grams: list[tuple[str, ...]] = []
    for text in texts:
        words = _WORD.findall(text.lower())
        grams += [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def diversity_report(
    texts: Iterable[str], embedder: Embedder | None, cap: int = 2000, cosine: float = 0.9
) -> dict[str, Any]:
    """The figures of the module docstring; spread and near-duplicates are None below
    ``MIN_TEXTS`` texts or without an embedder."""
    sample = [t for _, t in zip(range(cap), texts, strict=False)]
    report: dict[str, Any] = {
        "texts": len(sample),
        "distinct_1": round(distinct_n(sample, 1), 4),
        "distinct_2": round(distinct_n(sample, 2), 4),
        "spread": None,
        "near_duplicate_share": None,
    }
    if embedder is None or len(sample) < MIN_TEXTS:
        return report
    vectors = embedder.embed(sample).astype(np.float64)
    n = len(vectors)
    total = vectors.sum(axis=0)
    mean_cosine = (float(total @ total) - n) / (n * (n - 1))
    near = 0
    for i in range(1, n):
        near += bool((vectors[:i] @ vectors[i]).max() >= cosine)
    report.update(spread=round(1 - mean_cosine, 4), near_duplicate_share=round(near / n, 4))
    return report


def minilm() -> Embedder | None:
    """The embedded MiniLM model, or None where it cannot load (the report then has no
    spread, and the gate checks only what it has)."""
    from tasks.curation.embed import EmbedderUnavailable, MiniLMEmbedder

    try:
        return MiniLMEmbedder()
    except (EmbedderUnavailable, OSError) as exc:
        import logging

        logging.getLogger(__name__).warning("no diversity spread: %s", exc)
        return None


def diversity_suite(
    base: SuiteSpec, min_spread: float, max_near_duplicates: float, severity: str
) -> SuiteSpec:
    """``base`` (the shipped suite) with the run's bounds and severity."""
    bounds = {
        "spread": {"min_value": min_spread},
        "near_duplicate_share": {"max_value": max_near_duplicates},
    }
    expectations = [
        e.model_copy(update={"kwargs": {**e.kwargs, **bounds.get(e.kwargs.get("column"), {})}})
        for e in base.expectations
    ]
    return base.model_copy(update={"expectations": expectations, "severity": severity})
