"""Exact and near-duplicate dedup: what is kept, what is rejected and which kept row it
duplicates; kept + rejected = input whatever the data."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.curation.exact import ExactDedupConfig, exact_dedup, exact_dedup_stage, normalise
from tasks.curation.exact import ExactDedupConfig as LegacyConfig
from tasks.curation.exact import exact_dedup_stage as legacy_stage
from tasks.curation.minhash import MinHashDedupConfig, minhash_dedup, minhash_dedup_stage, shingles
from tasks.pipeline.runner import run_global, write_input_shards
from tasks.pipeline.stage import RunInfo, StageContext

CTX = StageContext(run=RunInfo(run_id="r", recipe="t"), stage="dedup")
RUN = RunInfo(run_id="r1", recipe="test")


def split(results) -> tuple[list[str], dict[str, dict[str, Any]]]:
    kept, rejected = [], {}
    for kind, row in results:
        if kind == "kept":
            kept.append(row["id"])
        else:
            rejected[row["record_id"]] = row
    return kept, rejected


def test_tasks_dedup_still_exports_the_exact_stage() -> None:
    assert LegacyConfig is ExactDedupConfig
    assert legacy_stage("x").fn is exact_dedup


def test_exact_strips_comments_of_the_chosen_syntax() -> None:
    code = "x = 1  # set x\n/* block */ y = 2 // tail"
    assert normalise(code, strip_comments=True) == "x = 1 /* block */ y = 2 // tail"
    assert normalise(code, strip_comments=True, comment_syntax="c") == "x = 1 # set x y = 2"
    assert normalise(code, strip_comments=True, comment_syntax="all") == "x = 1 y = 2"
    rows = [
        {"id": "a", "code": "def f():\n    return 1  # one"},
        {"id": "b", "code": "def f():\n  return 1"},
        {"id": "c", "code": "def f():\n    return 2"},
    ]
    config = ExactDedupConfig(fields=["code"], strip_comments=True)
    kept, rejected = split(exact_dedup(iter(rows), config, CTX))
    assert kept == ["a", "c"]
    assert rejected["b"]["reason"] == "duplicate of a"
    assert rejected["b"]["detail"] == {"duplicate_of": "a"}
    # comments count when not stripped
    assert split(exact_dedup(iter(rows), ExactDedupConfig(fields=["code"]), CTX))[0] == [
        "a",
        "b",
        "c",
    ]


def test_exact_reads_dotted_fields() -> None:
    rows = [{"id": "a", "m": {"q": "Hi"}}, {"id": "b", "m": {"q": "hi "}}]
    kept, rejected = split(exact_dedup(iter(rows), ExactDedupConfig(fields=["m.q"]), CTX))
    assert kept == ["a"] and set(rejected) == {"b"}


def test_shingles_fold_case_and_punctuation_and_keep_short_texts_whole() -> None:
    assert shingles("A b, C!", 2) == {b"a b", b"b c"}
    assert shingles("Hi there", 5) == {b"hi there"}
    assert shingles("abcd", 3, "char") == {b"abc", b"bcd"}


SENTENCE = (
    "Write a Python function that parses a date string in ISO format and returns the "
    "day of the week as a capitalised English name, raising ValueError on bad input."
)


def test_minhash_rejects_near_copies_and_names_the_kept_row() -> None:
    rows = [
        {"id": "orig", "p": SENTENCE},
        {"id": "reformatted", "p": SENTENCE.upper().replace(",", " ;")},
        {"id": "one_word_changed", "p": SENTENCE.replace("Python", "Rust")},
        {"id": "other", "p": "Explain how a hash map resolves collisions with open addressing."},
    ]
    config = MinHashDedupConfig(fields=["p"], threshold=0.5, ngram=3, unit="word")
    kept, rejected = split(minhash_dedup(iter(rows), config, CTX))
    assert kept == ["orig", "other"]
    assert rejected["reformatted"]["reason"] == "near-duplicate of orig"
    assert rejected["reformatted"]["detail"]["jaccard"] == 1.0
    assert rejected["one_word_changed"]["detail"]["duplicate_of"] == "orig"
    assert 0.5 <= rejected["one_word_changed"]["detail"]["jaccard"] < 1.0
    # a strict threshold keeps the one-word variant (its 3-gram Jaccard is ~0.8)
    strict = MinHashDedupConfig(fields=["p"], threshold=0.95, ngram=3, unit="word")
    assert split(minhash_dedup(iter(rows), strict, CTX))[0] == ["orig", "one_word_changed", "other"]


OTHERS = [
    "Explain how a hash map resolves collisions with open addressing.",
    "Sort a linked list in place using merge sort.",
    "Count the vowels of every line of a text file.",
    "Parse a CSV file of prices and print their median.",
    "Render a binary tree sideways in the terminal.",
    "Retry an HTTP request with exponential back-off.",
]


def test_minhash_as_a_global_stage_counts_every_row() -> None:
    others = iter(OTHERS)
    rows = [{"id": f"r{i}", "p": SENTENCE if i % 3 == 0 else next(others)} for i in range(9)]
    shards = write_input_shards(rows, 4, "t")
    out = run_global(minhash_dedup_stage(), shards, MinHashDedupConfig(fields=["p"]), RUN)
    assert (out.n_in, out.n_kept, out.n_rejected) == (9, 7, 2)
    assert {r["record_id"]: r["reason"] for r in out.rejected_rows()} == {
        "r3": "near-duplicate of r0",
        "r6": "near-duplicate of r0",
    }
    assert out.stage == "near_dedup"


def test_the_defaults_catch_one_word_edits_of_short_texts() -> None:
    """Short requests with one word replaced, inserted or dropped are near-duplicates at
    the default settings (character 4-grams, 0.5); distinct short requests are not."""
    base = "Return the longest common prefix of a list of strings."
    edits = [
        "Return the longest common suffix of a list of strings.",
        "Return the longest common prefix of a given list of strings.",
        "Return the longest prefix of a list of strings.",
    ]
    rows = [{"id": "base", "p": base}]
    rows += [{"id": f"edit{i}", "p": t} for i, t in enumerate(edits)]
    rows += [{"id": f"other{i}", "p": t} for i, t in enumerate(OTHERS)]
    kept, rejected = split(minhash_dedup(iter(rows), MinHashDedupConfig(fields=["p"]), CTX))
    assert kept == ["base"] + [f"other{i}" for i in range(len(OTHERS))]
    assert {r["detail"]["duplicate_of"] for r in rejected.values()} == {"base"}
    # the old defaults (word 5-grams at 0.8) let every edit through
    old = MinHashDedupConfig(fields=["p"], unit="word", ngram=5, threshold=0.8, lsh_margin=0)
    assert len(split(minhash_dedup(iter(rows), old, CTX))[0]) == len(rows)


WORDS = st.sampled_from(["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta"])
TEXTS = st.lists(st.lists(WORDS, min_size=0, max_size=12).map(" ".join), max_size=25)


@settings(max_examples=60, deadline=None)
@given(TEXTS, st.sampled_from([0.3, 0.6, 0.9, 1.0]))
def test_minhash_invariants(texts: list[str], threshold: float) -> None:
    rows = [{"id": str(i), "p": t} for i, t in enumerate(texts)]
    config = MinHashDedupConfig(fields=["p"], threshold=threshold, ngram=2, num_perm=64)
    results = list(minhash_dedup(iter(rows), config, CTX))
    kept, rejected = split(results)
    # nothing lost, nothing twice
    assert sorted(kept + list(rejected), key=int) == [r["id"] for r in rows]
    # a rejection names a row that was kept earlier, at or above the threshold
    position = {r["id"]: i for i, r in enumerate(rows)}
    for rid, rej in rejected.items():
        first = rej["detail"]["duplicate_of"]
        assert first in kept and position[first] < position[rid]
        assert rej["detail"]["jaccard"] >= threshold
    # identical shingle sets always collide: no two kept rows share one
    sets = [frozenset(shingles(rows[int(k)]["p"], 2)) for k in kept]
    assert len(set(sets)) == len(sets)


@settings(max_examples=60, deadline=None)
@given(TEXTS)
def test_exact_invariants(texts: list[str]) -> None:
    rows = [{"id": str(i), "p": t} for i, t in enumerate(texts)]
    kept, rejected = split(exact_dedup(iter(rows), ExactDedupConfig(fields=["p"]), CTX))
    assert len(kept) + len(rejected) == len(rows)
    assert len({rows[int(k)]["p"] for k in kept}) == len(kept) == len(set(texts))


def test_exact_stage_name_is_kept() -> None:
    assert exact_dedup_stage("unique_problems").name == "unique_problems"
