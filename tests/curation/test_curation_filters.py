"""Phrase balance, quality quantile, class balance and the contamination check: exactly
which rows stay and the reason each other one left."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tasks.core.paths import examples_dir
from tasks.curation.balance import ClassBalanceConfig, class_balance, distribution, quotas
from tasks.curation.contamination import (
    ContaminationConfig,
    ContaminationError,
    contamination_batch,
    contamination_stage,
)
from tasks.curation.phrases import PhraseBalanceConfig, phrase_balance
from tasks.curation.quantile import QualityQuantileConfig, quality_quantile, select_top
from tasks.pipeline.runner import run_stage, write_input_shards
from tasks.pipeline.stage import RunInfo, StageContext

CTX = StageContext(run=RunInfo(run_id="r", recipe="t"), stage="step")


def split(results) -> tuple[list[str], dict[str, dict[str, Any]]]:
    kept, rejected = [], {}
    for kind, row in results:
        if kind == "kept":
            kept.append(row["id"])
        else:
            rejected[row["record_id"]] = row
    return kept, rejected


# --- phrases --------------------------------------------------------------------------


def test_phrase_cap_drops_lowest_quality_first() -> None:
    rows = [{"id": f"ok{i}", "a": "Sure, here it is.", "q": 5} for i in range(8)]
    rows += [
        {"id": "sorry_best", "a": "I'm sorry, but here is the fix.", "q": 9},
        {"id": "sorry_worst", "a": "i’m SORRY for the delay.", "q": 1},
        {"id": "sorry_mid", "a": "I'm sorry: it fails.", "q": 4},
    ]
    # 3 of 11 contain it; a cap of 15% allows 1 of the 9 that remain after 2 drops
    config = PhraseBalanceConfig(fields=["a"], max_share=0.15, score_field="q")
    kept, rejected = split(phrase_balance(iter(rows), config, CTX))
    assert kept == [f"ok{i}" for i in range(8)] + ["sorry_best"]
    assert set(rejected) == {"sorry_worst", "sorry_mid"}
    detail = rejected["sorry_worst"]["detail"]
    assert rejected["sorry_worst"]["reason"] == 'overused phrase "I\'m sorry" (cap 15% of output)'
    assert detail["phrase"] == "I'm sorry" and detail["share_in_input"] == pytest.approx(
        3 / 11, abs=1e-3
    )


def test_phrase_cap_zero_bans_and_words_must_match_whole() -> None:
    rows = [
        {"id": "a", "t": "As an AI, I cannot."},
        {"id": "b", "t": "As an AIRLINE pilot..."},
        {"id": "c", "t": "Custom phrase here"},
    ]
    config = PhraseBalanceConfig(fields=["t"], max_share=0.0, phrases=["As an AI", "custom phrase"])
    kept, rejected = split(phrase_balance(iter(rows), config, CTX))
    assert kept == ["b"] and set(rejected) == {"a", "c"}
    assert rejected["c"]["detail"]["phrase"] == "custom phrase"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sets(st.integers(0, 2), max_size=3), st.integers(0, 5)), max_size=40),
    st.sampled_from([0.0, 0.1, 0.3, 0.5]),
)
def test_phrase_caps_hold_and_nothing_is_lost(spec, cap) -> None:
    phrases = ["alpha one", "beta two", "gamma three"]
    rows = [
        {"id": str(i), "t": " ".join(phrases[p] for p in sorted(ps)) or "plain", "q": q}
        for i, (ps, q) in enumerate(spec)
    ]
    config = PhraseBalanceConfig(fields=["t"], phrases=phrases, max_share=cap, score_field="q")
    kept, rejected = split(phrase_balance(iter(rows), config, CTX))
    assert sorted(kept + list(rejected), key=int) == [r["id"] for r in rows]
    for phrase in phrases:
        n = sum(phrase in rows[int(k)]["t"] for k in kept)
        assert n <= cap * len(kept) + 1e-9
    # a dropped row never beats a kept row that shares its phrase
    for rid, rej in rejected.items():
        p = rej["detail"]["phrase"]
        holders = [rows[int(k)]["q"] for k in kept if p in rows[int(k)]["t"]]
        assert all(q >= rows[int(rid)]["q"] for q in holders)


# --- quantile -------------------------------------------------------------------------


def test_top_quartile_with_and_without_ties() -> None:
    rows = [{"id": f"r{i}", "judge": {"score": s}} for i, s in enumerate([3, 9, 5, 9, 1, 7, 9, 2])]
    rows.append({"id": "none", "judge": {}})
    config = QualityQuantileConfig(score_field="judge.score", fraction=0.25)
    kept, rejected = split(quality_quantile(iter(rows), config, CTX))
    assert kept == ["r1", "r3", "r6"]  # top 2 of 8 is the cutoff 9: all three 9s stay
    assert rejected["none"]["reason"] == "no score in judge.score"
    assert rejected["r5"]["reason"] == "below the top 25% by judge.score"
    assert rejected["r5"]["detail"] == {"score": 7.0, "cutoff": 9.0}
    exact = QualityQuantileConfig(score_field="judge.score", fraction=0.25, keep_ties=False)
    assert split(quality_quantile(iter(rows), exact, CTX))[0] == ["r1", "r3"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=50), st.floats(0.01, 1.0))
def test_quantile_keeps_ceil_fraction_and_nothing_below(scores, fraction) -> None:
    import math

    import numpy as np

    values = np.array(scores, dtype=float)
    keep, cutoff = select_top(values, fraction, keep_ties=False)
    assert keep.sum() == math.ceil(fraction * len(scores))
    assert values[keep].min() >= values[~keep].max(initial=-1)
    ties, _ = select_top(values, fraction, keep_ties=True)
    assert ties.sum() >= keep.sum() and (values[ties] >= cutoff).all()


# --- class balance --------------------------------------------------------------------


def test_balance_downsamples_to_the_target_mix_keeping_the_best() -> None:
    rows = [{"id": f"e{i}", "level": "easy", "s": i} for i in range(6)]
    rows += [{"id": f"h{i}", "level": "hard", "s": i} for i in range(2)]
    rows += [{"id": "x", "level": "trivia"}, {"id": "m"}]
    config = ClassBalanceConfig(column="level", target={"easy": 2, "hard": 1}, score_field="s")
    kept, rejected = split(class_balance(iter(rows), config, CTX))
    # hard (2 rows at a third) limits the output to 6 rows: the 4 best easy ones stay
    assert kept == ["e2", "e3", "e4", "e5", "h0", "h1"]
    assert rejected["e0"]["reason"] == "class 'easy' over its target share 67%"
    assert rejected["x"]["reason"] == "class 'trivia' not in the target mix"
    assert rejected["m"]["reason"] == "class '(missing)' not in the target mix"


def test_balance_without_target_reports_and_keeps_all() -> None:
    rows = [{"id": str(i), "topic": t} for i, t in enumerate("aabc")]
    kept, rejected = split(class_balance(iter(rows), ClassBalanceConfig(column="topic"), CTX))
    assert kept == ["0", "1", "2", "3"] and not rejected
    report = distribution(Counter({"a": 2, "b": 1, "c": 1}), {"a": 0.5, "d": 0.5})
    assert report[0] == {"class": "a", "count": 2, "share": 0.5, "target": 0.5}
    assert report[-1] == {"class": "d", "count": 0, "share": 0.0, "target": 0.5}


def test_quotas_ignore_absent_target_classes() -> None:
    assert quotas(Counter({"a": 10, "b": 3}), {"a": 0.5, "b": 0.25, "c": 0.25}) == {"a": 6, "b": 3}
    assert quotas(Counter({"a": 10}), {"z": 1.0}) == {}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from("abcd"), max_size=60),
    st.dictionaries(st.sampled_from("abc"), st.integers(1, 5), min_size=1),
)
def test_balance_invariants(labels, target) -> None:
    rows = [{"id": str(i), "k": k} for i, k in enumerate(labels)]
    config = ClassBalanceConfig(column="k", target=target)
    kept, rejected = split(class_balance(iter(rows), config, CTX))
    assert sorted(kept + list(rejected), key=int) == [r["id"] for r in rows]
    counts = Counter(rows[int(i)]["k"] for i in kept)
    assert set(counts) <= set(target)
    shares = config.target or {}
    present = {k for k in target if k in labels}
    if kept:
        total = sum(shares[k] for k in present)
        n = len(kept)
        for k in present:  # within rounding of one row per class
            assert abs(counts[k] - shares[k] / total * n) <= len(present)


# --- contamination --------------------------------------------------------------------

EVALS = examples_dir() / "evals"


def test_flags_overlap_with_a_named_benchmark() -> None:
    rows = [
        {
            "id": "leak",
            "problem": "Given a string of round, square and curly brackets, return True if every "
            "opening bracket is closed by the same kind of bracket in the correct order. "
            "Use a stack.",
        },
        {
            "id": "trivia",
            "problem": "Q: which gas do plants take in from the air during photosynthesis "
            "and use to build sugars?",
        },
        {"id": "clean", "problem": "Write a function that checks whether brackets are balanced."},
    ]
    config = ContaminationConfig(fields=["problem"], against=str(EVALS))
    out = contamination_batch(rows, config, CTX)
    assert [r["id"] for r in out.kept] == ["clean"]
    reasons = {r["record_id"]: r for r in out.rejected}
    assert reasons["leak"]["reason"] == "contaminated: overlaps toy_code_eval"
    assert reasons["leak"]["detail"]["matches"]["toy_code_eval"] >= 10
    assert reasons["trivia"]["reason"] == "contaminated: overlaps toy_trivia"
    assert len(reasons["trivia"]["detail"]["ngram"].split()) == 13


def test_short_items_match_whole_and_tiny_ones_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "short.jsonl").write_text(
        '{"q": "name the capital city of australia please now", "a": "x"}\n'
        '{"q": "yes", "a": "no"}\n'
    )
    config = ContaminationConfig(fields=["t"], against=str(tmp_path), eval_fields=["q"])
    rows = [
        {"id": "1", "t": "Quick: Name the capital city of Australia, please now!"},
        {"id": "2", "t": "yes"},
        {"id": "3", "t": "the capital city of australia"},
    ]
    out = contamination_batch(rows, config, CTX)
    assert [r["id"] for r in out.kept] == ["2", "3"]
    assert out.rejected[0]["reason"] == "contaminated: overlaps bench/short"
    with pytest.raises(ContaminationError, match="not JSON"):
        (tmp_path / "bench" / "bad.jsonl").write_text("{oops\n")
        contamination_batch(rows, ContaminationConfig(fields=["t"], against=str(tmp_path)), CTX)


def test_changed_eval_set_changes_the_config(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text(
        "one two three four five six seven eight nine ten eleven twelve thirteen\n"
    )
    before = ContaminationConfig(fields=["t"], against=str(tmp_path)).against_digest
    (tmp_path / "a.txt").write_text("something else entirely\n")
    assert ContaminationConfig(fields=["t"], against=str(tmp_path)).against_digest != before
    with pytest.raises(ValidationError, match="no eval folder"):
        ContaminationConfig(fields=["t"], against=str(tmp_path / "missing"))


def test_contamination_runs_as_a_sharded_stage() -> None:
    leak = (
        "Write a function that takes a positive integer n and returns the list of its prime "
        "factors in increasing order"
    )
    rows = [{"id": f"r{i}", "t": leak if i == 2 else f"harmless {i}"} for i in range(5)]
    shards = write_input_shards(rows, 2, "t")
    config = ContaminationConfig(fields=["t"], against=str(EVALS))
    out = run_stage(contamination_stage(), shards, config, RunInfo(run_id="r", recipe="t"))
    assert (out.n_in, out.n_kept, out.n_rejected) == (5, 4, 1)
    assert [r["record_id"] for r in out.rejected_rows()] == ["r2"]


@pytest.mark.slow  # imports Great Expectations (~3-20 s)
def test_balanced_output_passes_the_example_gx_suite_and_skewed_input_fails() -> None:
    import pandas as pd

    from tasks.gates import gx

    mix = {"easy": 0.3, "medium": 0.4, "hard": 0.3}
    rows = [{"id": f"e{i}", "difficulty": "easy"} for i in range(500)]
    rows += [{"id": f"m{i}", "difficulty": "medium"} for i in range(100)]
    rows += [{"id": f"h{i}", "difficulty": "hard"} for i in range(90)]
    skewed = pd.DataFrame(rows)
    assert not gx.validate(skewed, "curation.balance").success
    config = ClassBalanceConfig(column="difficulty", target=mix)
    kept = [row for kind, row in class_balance(iter(rows), config, CTX) if kind == "kept"]
    # medium (100 rows at 40%) limits the output to 250 rows
    assert Counter(r["difficulty"] for r in kept) == {"easy": 75, "medium": 100, "hard": 75}
    result = gx.validate(pd.DataFrame(kept), "curation.balance")
    assert result.success, result.failures
