"""Semantic dedup: best rows first, a row kept only if its cosine to every kept row is
below the threshold; exact in blocks; the real MiniLM model on a few sentences."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tasks.curation.semantic import (
    SemanticDedupConfig,
    greedy_select,
    quality_order,
    semantic_dedup_stage,
)
from tasks.pipeline.runner import run_global, write_input_shards
from tasks.pipeline.stage import RunInfo, StageContext

CTX = StageContext(run=RunInfo(run_id="r", recipe="t"), stage="semantic_dedup")
RUN = RunInfo(run_id="r1", recipe="test")


class TableEmbedder:
    """Vectors looked up by text: each test says exactly how similar rows are."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table
        self.calls: list[int] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        v = np.array([self.table[t] for t in texts], dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def unit(angle_deg: float) -> list[float]:
    a = np.radians(angle_deg)
    return [float(np.cos(a)), float(np.sin(a))]


def run_fn(rows: list[dict[str, Any]], config: SemanticDedupConfig, embedder: TableEmbedder):
    fn = semantic_dedup_stage(embedder=lambda _c: embedder).fn
    kept, rejected = [], {}
    for kind, row in fn(iter(rows), config, CTX):
        if kind == "kept":
            kept.append(row["id"])
        else:
            rejected[row["record_id"]] = row
    return kept, rejected


# cos(10°) = 0.985, cos(20°) = 0.940, cos(30°) = 0.866, cos(90°) = 0
TABLE = {"a": unit(0), "b": unit(10), "c": unit(20), "d": unit(90), "e": unit(30)}


def test_best_scored_row_of_a_cluster_survives_and_output_keeps_input_order() -> None:
    rows = [
        {"id": "r1", "t": "a", "judge": {"score": 1}},
        {"id": "r2", "t": "b", "judge": {"score": 9}},
        {"id": "r3", "t": "d", "judge": {"score": 5}},
        {"id": "r4", "t": "c", "judge": {"score": 3}},
    ]
    config = SemanticDedupConfig(field="t", threshold=0.95, score_field="judge.score")
    kept, rejected = run_fn(rows, config, TableEmbedder(TABLE))
    # r2 (score 9) first; r1 at 10° from it is a duplicate; r4 at 10° from r2 too
    assert kept == ["r2", "r3"]
    assert rejected["r1"]["reason"] == "semantic duplicate of r2"
    assert rejected["r1"]["detail"] == {
        "duplicate_of": "r2",
        "cosine": pytest.approx(0.9848, abs=1e-3),
    }
    assert rejected["r4"]["detail"]["duplicate_of"] == "r2"
    assert rejected["r4"]["stage"] == "semantic_dedup"


def test_without_scores_input_order_decides_and_chains_do_not_propagate() -> None:
    # a-b and b-c are above 0.95, a-c (20°) is not: b goes, so c stays
    rows = [{"id": x, "t": x} for x in "abc"]
    kept, rejected = run_fn(
        rows, SemanticDedupConfig(field="t", threshold=0.95), TableEmbedder(TABLE)
    )
    assert kept == ["a", "c"] and list(rejected) == ["b"]


def test_difficulty_multiplies_the_score_and_missing_scores_go_last() -> None:
    rows = [
        {"id": "easy_good", "t": "a", "q": 8, "d": 1},
        {"id": "hard_ok", "t": "b", "q": 5, "d": 3},  # 15 beats 8
        {"id": "unscored", "t": "c"},
    ]
    config = SemanticDedupConfig(field="t", threshold=0.9, score_field="q", difficulty_field="d")
    kept, rejected = run_fn(rows, config, TableEmbedder(TABLE))
    assert kept == ["hard_ok"]
    assert {k: r["detail"]["duplicate_of"] for k, r in rejected.items()} == {
        "easy_good": "hard_ok",
        "unscored": "hard_ok",
    }


def test_quality_order_is_stable_and_puts_nan_last() -> None:
    keys = np.array([1.0, np.nan, 3.0, 1.0, -2.0])
    assert quality_order(keys).tolist() == [2, 0, 3, 4, 1]


def test_embeds_in_batches_and_runs_as_a_global_stage() -> None:
    rows = [{"id": f"r{i}", "t": "ade"[i % 3]} for i in range(7)]
    emb = TableEmbedder(TABLE)
    shards = write_input_shards(rows, 3, "t")
    config = SemanticDedupConfig(field="t", threshold=0.9, embed_batch=2)
    out = run_global(semantic_dedup_stage(embedder=lambda _c: emb), shards, config, RUN)
    assert emb.calls == [2, 2, 2, 1]
    assert [r["id"] for r in out.kept_rows()] == ["r0", "r1", "r2"]
    assert (out.n_in, out.n_kept, out.n_rejected) == (7, 3, 4)
    assert {r["record_id"]: r["detail"]["duplicate_of"] for r in out.rejected_rows()} == {
        "r3": "r0",
        "r4": "r1",
        "r5": "r2",
        "r6": "r0",
    }


def test_blocks_and_chunks_do_not_change_the_answer() -> None:
    rng = np.random.default_rng(7)
    base = rng.standard_normal((60, 16)).astype(np.float32)
    vecs = np.concatenate([base, base[:40] + 0.2 * rng.standard_normal((40, 16))]).astype(
        np.float32
    )
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    order = rng.permutation(len(vecs))
    reference = greedy_select(vecs, order, 0.8, block_size=len(vecs), kept_chunk=len(vecs))
    for block, chunk in [(1, 1), (7, 5), (32, 3), (100, 1000)]:
        dup, sim = greedy_select(vecs, order, 0.8, block_size=block, kept_chunk=chunk)
        assert dup.tolist() == reference[0].tolist()
        np.testing.assert_allclose(sim, reference[1], atol=1e-5)
    assert (reference[0] >= 0).sum() > 10  # the planted near-copies were found


VECTORS = st.integers(1, 40).flatmap(
    lambda n: arrays(np.float32, (n, 3), elements=st.floats(-1, 1, width=32)).filter(
        lambda a: bool((np.linalg.norm(a, axis=1) > 1e-3).all())
    )
)


@settings(max_examples=80, deadline=None)
@given(VECTORS, st.floats(0.0, 0.99), st.integers(1, 8))
def test_no_kept_pair_reaches_the_threshold(vectors: np.ndarray, threshold: float, block: int):
    vecs = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    order = np.arange(len(vecs))[::-1]
    dup, sim = greedy_select(vecs, order, threshold, block_size=block, kept_chunk=3)
    kept = np.flatnonzero(dup < 0)
    gram = vecs[kept] @ vecs[kept].T
    np.fill_diagonal(gram, -np.inf)
    assert len(kept) >= 1 and gram.max() < threshold + 1e-5
    rank = {int(r): i for i, r in enumerate(order)}
    for r in np.flatnonzero(dup >= 0):
        d = int(dup[r])
        assert dup[d] < 0 and rank[d] < rank[int(r)]  # names a row kept before it
        assert float(vecs[r] @ vecs[d]) == pytest.approx(float(sim[r]), abs=1e-5)
        assert sim[r] >= threshold - 1e-6


def test_real_minilm_model_collapses_paraphrases() -> None:
    from tasks.curation.embed import shared_embedder

    started = time.monotonic()
    model = shared_embedder()
    rows = [
        {"id": "q1", "q": "How do I reverse a list in Python?", "s": 2},
        {"id": "q2", "q": "How can I reverse a Python list?", "s": 5},
        {"id": "q3", "q": "What is the capital of France?", "s": 1},
        {"id": "q4", "q": "Explain the causes of the French Revolution.", "s": 1},
    ]
    fn = semantic_dedup_stage(embedder=lambda _c: model).fn
    config = SemanticDedupConfig(field="q", threshold=0.9, score_field="s")
    results = list(fn(iter(rows), config, CTX))
    assert [r["id"] for k, r in results if k == "kept"] == ["q2", "q3", "q4"]
    (rej,) = [r for k, r in results if k == "rejected"]
    assert rej["record_id"] == "q1" and rej["detail"]["duplicate_of"] == "q2"
    assert rej["detail"]["cosine"] > 0.95
    vectors = model.embed(["A man is eating food.", "A man is eating a piece of bread."])
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # sentence-transformers' all-MiniLM-L6-v2 gives 0.7554 for this pair
    assert float(vectors[0] @ vectors[1]) == pytest.approx(0.755, abs=0.01)
    assert time.monotonic() - started < 30


def test_config_needs_a_field() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="needs field or fields"):
        SemanticDedupConfig()
    assert SemanticDedupConfig(field="a", fields=["b"]).text_fields() == ["a", "b"]
