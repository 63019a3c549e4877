"""Semantic deduplication (Llama 3): embed every row, visit rows from the best to the
worst by quality (× difficulty where the recipe has one), keep a row only if its cosine
similarity to every row kept so far is below ``threshold``.

The greedy pass is exact, not approximate. It goes through the sorted rows in blocks:
a block is compared with the kept rows by matrix products over chunks of them (so a
product never exceeds ``block_size`` × ``kept_chunk`` floats), then with the rows kept
earlier in the same block. Memory is linear in the row count: the embeddings
(``n`` × 384, float32 or float16) plus the kept ones in float32; the rows themselves wait
on disk in a spool and come out in input order.

Llama 3 first clusters the embeddings and deduplicates within clusters; comparing with
every kept row is the stricter form of the same rule and fast enough at this scale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, Field, model_validator

from tasks.curation.common import Spool, get_path, number, rejection, text_of
from tasks.pipeline.stage import GlobalStage, StageContext


class Embedder(Protocol):
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length vectors, one row per text."""
        ...


class SemanticDedupConfig(BaseModel):
    field: str | None = Field(None, description="the text field to embed (or use fields)")
    fields: list[str] = Field(default_factory=list, description="several fields, joined")
    threshold: float = Field(0.9, gt=-1.0, le=1.0, description="cosine similarity to reject at")
    score_field: str | None = Field(None, description="quality score, dotted (judge.score)")
    difficulty_field: str | None = Field(None, description="multiplies the score when set")
    block_size: int = Field(1024, ge=1, description="sorted rows compared per step")
    kept_chunk: int = Field(8192, ge=1, description="kept rows per matrix product")
    embed_batch: int = Field(1024, ge=1, description="rows read before each embedding call")
    dtype: Literal["float32", "float16"] = "float32"
    threads: int = Field(0, ge=0, description="onnxruntime threads (0: one per core)")

    @model_validator(mode="after")
    def _some_field(self) -> SemanticDedupConfig:
        if not self.field and not self.fields:
            raise ValueError("SemanticDedupConfig needs field or fields")
        return self

    def text_fields(self) -> list[str]:
        return ([self.field] if self.field else []) + list(self.fields)


class _Chunks:
    """Embeddings as they come, in chunks; ``stack`` frees each chunk as it copies it, so
    the peak is one full matrix plus one chunk, not two matrices as with doubling."""

    def __init__(self, dtype: Any) -> None:
        self.dtype = np.dtype(dtype)
        self.chunks: list[np.ndarray] = []
        self.n = 0

    def append(self, block: np.ndarray) -> None:
        self.chunks.append(block.astype(self.dtype, copy=False))
        self.n += len(block)

    def stack(self) -> np.ndarray:
        dim = self.chunks[0].shape[1]
        out = np.empty((self.n, dim), dtype=self.dtype)
        at = 0
        self.chunks.reverse()
        while self.chunks:
            chunk = self.chunks.pop()
            out[at : at + len(chunk)] = chunk
            at += len(chunk)
        return out


def _sort_key(row: dict[str, Any], config: SemanticDedupConfig) -> float:
    """Larger first; NaN (no score) last."""
    if config.score_field is None:
        return 0.0
    score = number(get_path(row, config.score_field))
    if score is None:
        return float("nan")
    if config.difficulty_field:
        difficulty = number(get_path(row, config.difficulty_field))
        if difficulty is None:
            return float("nan")
        score *= difficulty
    return score


def quality_order(keys: np.ndarray) -> np.ndarray:
    """Row indices by descending key, missing (NaN) keys last, ties in input order."""
    missing = np.isnan(keys)
    filled = np.where(missing, 0.0, keys)
    return np.lexsort((np.arange(len(keys)), -filled, missing))


def greedy_select(
    embeddings: np.ndarray,
    order: np.ndarray,
    threshold: float,
    block_size: int = 1024,
    kept_chunk: int = 8192,
) -> tuple[np.ndarray, np.ndarray]:
    """Visit rows in ``order``; keep one if its cosine to every kept row is < threshold.

    Returns ``duplicate_of`` (per row: -1 if kept, else the index of the kept row it is
    most similar to) and ``similarity`` (that cosine; -inf for kept rows).
    """
    n, dim = embeddings.shape
    duplicate_of = np.full(n, -1, dtype=np.int64)
    similarity = np.full(n, -np.inf, dtype=np.float32)
    # Sized for the worst case (all kept) but untouched pages cost no memory: the
    # resident part grows with the rows actually kept, and nothing is ever copied.
    kept = np.empty((n, dim), dtype=np.float32)
    n_kept = 0
    kept_index: list[int] = []  # row index of each kept vector
    buffer = np.empty(min(block_size, n) * min(kept_chunk, n), dtype=np.float32)
    for start in range(0, n, block_size):
        block = order[start : start + block_size]
        x = np.ascontiguousarray(embeddings[block], dtype=np.float32)
        best = np.full(len(block), -np.inf, dtype=np.float32)
        best_at = np.full(len(block), -1, dtype=np.int64)
        for c in range(0, n_kept, kept_chunk):
            part = kept[c : min(c + kept_chunk, n_kept)]
            # one reused buffer: a fresh 32 MB product per chunk fragments the heap
            sims = buffer[: len(block) * len(part)].reshape(len(block), len(part))
            np.matmul(x, part.T, out=sims)
            at = sims.argmax(axis=1)
            top = sims[np.arange(len(block)), at]
            better = top > best
            best[better] = top[better]
            best_at[better] = at[better] + c
        # Within the block: a row with no earlier row of the block at or above the
        # threshold is kept outright; only the others need the sequential check.
        dup = best >= threshold
        inner = x @ x.T
        close = np.tril(inner >= threshold, k=-1)
        contested = close.any(axis=1) & ~dup
        keep = ~dup & ~contested
        for i in np.flatnonzero(contested):
            earlier = np.flatnonzero(close[i] & keep)
            if earlier.size:
                j = int(earlier[inner[i, earlier].argmax()])
                row = int(block[i])
                duplicate_of[row] = int(block[j])
                similarity[row] = inner[i, j]
            else:
                keep[i] = True
        rows_dup = block[dup]
        duplicate_of[rows_dup] = np.asarray(kept_index, dtype=np.int64)[best_at[dup]]
        similarity[rows_dup] = best[dup]
        kept_here = np.flatnonzero(keep)
        kept[n_kept : n_kept + len(kept_here)] = x[kept_here]
        n_kept += len(kept_here)
        kept_index.extend(block[kept_here].tolist())
    return duplicate_of, similarity


def semantic_dedup_fn(
    embedder: Callable[[SemanticDedupConfig], Embedder] | None = None,
) -> Callable[..., Iterator[tuple[str, dict[str, Any]]]]:
    """The GlobalStage function, with the embedder a factory can replace (tests)."""

    def semantic_dedup(
        rows: Iterator[dict[str, Any]], config: SemanticDedupConfig, ctx: StageContext
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        fields = config.text_fields()
        if embedder is None:
            from tasks.curation.embed import shared_embedder

            model: Embedder = shared_embedder(threads=config.threads)
        else:
            model = embedder(config)
        vectors: _Chunks = _Chunks(config.dtype)
        ids: list[str] = []
        keys: list[float] = []
        pending: list[str] = []

        def flush() -> None:
            if pending:
                vectors.append(model.embed(pending))
                pending.clear()

        with Spool() as spool:
            for row in rows:
                spool.append(row)
                ids.append(str(row.get("id", "")))
                keys.append(_sort_key(row, config))
                pending.append(text_of(row, fields))
                if len(pending) >= config.embed_batch:
                    flush()
            flush()
            if vectors.n == 0:
                return
            embeddings = vectors.stack()
            order = quality_order(np.asarray(keys, dtype=np.float64))
            duplicate_of, similarity = greedy_select(
                embeddings, order, config.threshold, config.block_size, config.kept_chunk
            )
            del embeddings
            for i, row in enumerate(spool):
                d = int(duplicate_of[i])
                if d < 0:
                    yield "kept", row
                    continue
                yield (
                    "rejected",
                    rejection(
                        row,
                        ctx.stage,
                        f"semantic duplicate of {ids[d]}",
                        {"duplicate_of": ids[d], "cosine": round(float(similarity[i]), 4)},
                    ),
                )

    return semantic_dedup


def semantic_dedup_stage(
    name: str = "semantic_dedup",
    embedder: Callable[[SemanticDedupConfig], Embedder] | None = None,
) -> GlobalStage:
    """``embedder``: a factory from the config to an :class:`Embedder`; default MiniLM."""
    return GlobalStage(name=name, fn=semantic_dedup_fn(embedder))
