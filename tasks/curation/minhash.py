"""Near-duplicate deduplication with MinHash LSH (``datasketch``), as a whole-dataset step.

Each row's text becomes a set of shingles (word or character n-grams of its normalised
text) and a MinHash signature. Rows are visited in input order: a row is kept unless the
LSH index returns an already kept row whose estimated Jaccard similarity (the share of
equal signature slots) is at least ``threshold``; then it is rejected with that row's id.

LSH only proposes candidates; the decision is the signature estimate against the kept
row, so a rejection always names a kept row at or above the threshold. LSH can miss a
pair just above the threshold (a false negative of the banding); identical shingle sets
always collide. Memory: the LSH bands plus one signature per kept row
(``num_perm`` × 4-8 bytes).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from tasks.curation.common import rejection, text_of
from tasks.pipeline.stage import GlobalStage, StageContext

_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")


class MinHashDedupConfig(BaseModel):
    """The defaults catch one- or two-word edits of short texts (8 to 40 words): on the
    planted sets of ``benchmarks/near_dup.py`` word 5-grams at 0.8 caught almost none
    (a one-word edit of a 15-word text changes 5 of its 11 word 5-grams), character
    4-grams at 0.5 catch 96% (chosen there) and 94% on held-out HumanEval sentences."""

    fields: list[str] = Field(description="fields whose joined text is compared")
    threshold: float = Field(0.5, gt=0.0, le=1.0, description="Jaccard similarity to reject at")
    num_perm: int = Field(128, ge=16, le=1024, description="signature length")
    ngram: int = Field(4, ge=1, le=50, description="shingle length, in units")
    unit: Literal["word", "char"] = "char"
    lsh_margin: float = Field(
        0.2,
        ge=0.0,
        lt=1.0,
        description="LSH bands are set for threshold - margin, so that pairs just above the "
        "threshold are proposed too (the decision stays at the threshold)",
    )
    seed: int = 1


def shingles(text: str, ngram: int, unit: Literal["word", "char"] = "word") -> set[bytes]:
    """The set of n-grams of ``text`` after folding case and punctuation (words) or
    whitespace (characters). A text shorter than one n-gram is one shingle."""
    if unit == "word":
        tokens = _WORD.findall(text.lower())
        if len(tokens) <= ngram:
            return {" ".join(tokens).encode()}
        return {" ".join(tokens[i : i + ngram]).encode() for i in range(len(tokens) - ngram + 1)}
    flat = _SPACE.sub(" ", text.lower()).strip()
    if len(flat) <= ngram:
        return {flat.encode()}
    return {flat[i : i + ngram].encode() for i in range(len(flat) - ngram + 1)}


class _Signer:
    """MinHash signatures with the permutations drawn once, not per row."""

    def __init__(self, num_perm: int, seed: int) -> None:
        from datasketch import MinHash

        self._cls = MinHash
        self._template = MinHash(num_perm=num_perm, seed=seed)
        self.num_perm = num_perm
        self.seed = seed

    def sign(self, items: set[bytes]) -> Any:
        m = self._cls(
            num_perm=self.num_perm,
            seed=self.seed,
            permutations=self._template.permutations,
            scheme=self._template.scheme,
        )
        m.update_batch(items)
        return m


class _KeptSignatures:
    """Signatures of kept rows in one growing array (index = LSH key)."""

    def __init__(self, num_perm: int, dtype: np.dtype) -> None:
        self._data = np.empty((1024, num_perm), dtype=dtype)
        self.ids: list[str] = []

    def add(self, row_id: str, hashvalues: np.ndarray) -> int:
        n = len(self.ids)
        if n == len(self._data):
            grown = np.empty((2 * n, self._data.shape[1]), dtype=self._data.dtype)
            grown[:n] = self._data
            self._data = grown
        self._data[n] = hashvalues
        self.ids.append(row_id)
        return n

    def best(self, candidates: list[int], hashvalues: np.ndarray) -> tuple[int, float]:
        """The candidate with the highest estimated Jaccard similarity, and that value."""
        idx = np.asarray(sorted(candidates))
        sims = (self._data[idx] == hashvalues).mean(axis=1)
        i = int(np.argmax(sims))
        return int(idx[i]), float(sims[i])


def minhash_dedup(
    rows: Iterator[dict[str, Any]], config: MinHashDedupConfig, ctx: StageContext
) -> Iterator[tuple[str, dict[str, Any]]]:
    from datasketch import MinHashLSH

    signer = _Signer(config.num_perm, config.seed)
    # The banding needs a threshold below 1 to have two bands or more. Set at the decision
    # threshold, it misses about half the pairs just above it; set lower, it proposes more
    # candidates, and the decision below still uses the configured threshold.
    banding = max(0.05, min(config.threshold - config.lsh_margin, 0.95))
    lsh = MinHashLSH(threshold=banding, num_perm=config.num_perm)
    kept: _KeptSignatures | None = None
    for row in rows:
        m = signer.sign(shingles(text_of(row, config.fields), config.ngram, config.unit))
        if kept is None:
            kept = _KeptSignatures(config.num_perm, m.hashvalues.dtype)
        candidates = lsh.query(m)
        if candidates:
            best, sim = kept.best(candidates, m.hashvalues)
            if sim >= config.threshold:
                first = kept.ids[best]
                yield (
                    "rejected",
                    rejection(
                        row,
                        ctx.stage,
                        f"near-duplicate of {first}",
                        {"duplicate_of": first, "jaccard": round(sim, 4)},
                    ),
                )
                continue
        lsh.insert(kept.add(str(row.get("id", "")), m.hashvalues), m, check_duplication=False)
        yield "kept", row


def minhash_dedup_stage(name: str = "near_dedup") -> GlobalStage:
    return GlobalStage(name=name, fn=minhash_dedup)
