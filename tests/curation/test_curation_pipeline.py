"""Curation steps chained in a run, one line each as a recipe writes them: the catalog
records every step's funnel and each rejection's stage and reason; nothing is lost."""

from __future__ import annotations

from pydantic import BaseModel

from tasks.core.paths import examples_dir
from tasks.curation import (
    ContaminationConfig,
    MinHashDedupConfig,
    PhraseBalanceConfig,
    QualityQuantileConfig,
    contamination_stage,
    minhash_dedup_stage,
    phrase_balance_stage,
    quality_quantile_stage,
)
from tasks.pipeline.run import Run
from tasks.pipeline.runner import write_input_shards


class Params(BaseModel):
    shard_size: int = 4


LEAK = (
    "Write a function that takes a positive integer n and returns the list of its prime "
    "factors in increasing order, repeating a factor as many times as it divides n."
)


def test_chained_steps_record_funnel_and_reasons() -> None:
    rows = [
        {"id": "leak", "text": LEAK, "judge": {"score": 10}},
        {
            "id": "a",
            "text": "implement an lru cache class with get and put in python",
            "judge": {"score": 9},
        },
        {
            "id": "a2",
            "text": "Implement an LRU cache class with get and put in Python!",
            "judge": {"score": 8},
        },
        {
            "id": "b",
            "text": "I'm sorry, explain binary search over a sorted array of ints",
            "judge": {"score": 2},
        },
        {
            "id": "c",
            "text": "parse a csv file of orders and total the amounts per customer",
            "judge": {"score": 7},
        },
        {
            "id": "d",
            "text": "write a tokenizer for arithmetic expressions with parentheses",
            "judge": {"score": 5},
        },
        {
            "id": "e",
            "text": "check whether a string is a palindrome ignoring punctuation",
            "judge": {"score": 3},
        },
    ]
    run = Run("curation-test", Params())
    seeds = write_input_shards(rows, 4, "curation-test")
    evals = str(examples_dir() / "evals")
    clean = run.stage(
        contamination_stage(), seeds, ContaminationConfig(fields=["text"], against=evals)
    )
    unique = run.global_stage(
        minhash_dedup_stage(), clean.kept, MinHashDedupConfig(fields=["text"], threshold=0.7)
    )
    polite = run.global_stage(
        phrase_balance_stage(),
        unique.kept,
        PhraseBalanceConfig(fields=["text"], max_share=0.0, score_field="judge.score"),
    )
    best = run.global_stage(
        quality_quantile_stage(),
        polite.kept,
        QualityQuantileConfig(score_field="judge.score", fraction=0.5),
    )
    run.finish("completed")

    assert sorted(r["id"] for r in best.kept_rows()) == ["a", "c"]
    funnel = run.catalog.funnel(run.run_id)
    assert [(f["stage"], f["n_in"], f["n_out"], f["n_rejected"]) for f in funnel] == [
        ("contamination", 7, 6, 1),
        ("near_dedup", 6, 5, 1),
        ("phrase_balance", 5, 4, 1),
        ("quality_quantile", 4, 2, 2),
    ]
    assert all(
        f["n_unaccounted"] == 0 and f["n_rejections_recorded"] == f["n_rejected"] for f in funnel
    )
    reasons = {
        r["record_id"]: (r["stage"], r["reason"]) for r in run.catalog.rejections(run.run_id)
    }
    assert reasons == {
        "leak": ("contamination", "contaminated: overlaps toy_code_eval"),
        "a2": ("near_dedup", "near-duplicate of a"),
        "b": ("phrase_balance", 'overused phrase "I\'m sorry" (cap 0% of output)'),
        "d": ("quality_quantile", "below the top 50% by judge.score"),
        "e": ("quality_quantile", "below the top 50% by judge.score"),
    }
