"""The diversity report and its gate, and seeds drawn from topic x concept x persona."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.core.seeds import seed_rows
from tasks.curation.diversity import distinct_n, diversity_report, diversity_suite
from tasks.gates import gx
from tasks.gates.suites import load_suite


class AxisEmbedder:
    """A named test double: text i of a distinct topic gets a unit vector on its own
    axis, so distinct texts are orthogonal and repeats identical."""

    def embed(self, texts: list[str]) -> np.ndarray:
        axes = {t: i for i, t in enumerate(dict.fromkeys(texts))}
        out = np.zeros((len(texts), len(axes)), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row, axes[text]] = 1.0
        return out


def test_distinct_n_counts_repeated_phrasing() -> None:
    assert distinct_n(["a b c", "d e f"], 2) == 1.0
    assert distinct_n(["a b c", "a b c"], 2) == 0.5
    assert distinct_n([], 1) == 0.0


def test_spread_and_near_duplicates_from_the_vectors() -> None:
    distinct = [f"text {i}" for i in range(5)]
    report = diversity_report(distinct, AxisEmbedder())
    assert report["spread"] == 1.0 and report["near_duplicate_share"] == 0.0
    same = ["one text"] * 4 + ["another"]
    report = diversity_report(same, AxisEmbedder())
    assert report["near_duplicate_share"] == 0.6  # 3 of 5 repeat an earlier one
    assert report["spread"] == pytest.approx(1 - 6 / 10)  # 6 of 10 pairs are identical
    small = diversity_report(distinct[:3], AxisEmbedder())
    assert small["spread"] is None and small["texts"] == 3  # too few to say anything


def frame(report: dict) -> pd.DataFrame:
    return pd.DataFrame([report])


def test_the_gate_takes_its_bounds_and_severity_from_the_run() -> None:
    base = load_suite("code_sft.diversity")
    suite = diversity_suite(base, 0.3, 0.2, "critical")
    assert suite.severity == "critical"
    varied = diversity_report([f"text {i}" for i in range(6)], AxisEmbedder())
    assert gx.validate(frame(varied), suite).success
    repeats = diversity_report(["same"] * 5 + ["other"], AxisEmbedder())
    result = gx.validate(frame(repeats), suite)
    assert not result.success
    with pytest.raises(gx.GateFailed):
        gx.enforce(result)
    assert not gx.enforce(
        gx.validate(frame(repeats), diversity_suite(base, 0.3, 0.2, "warning"))
    ).success
    # under four problems the figures are null, and nothing is checked
    assert gx.validate(frame(diversity_report(["a", "a"], AxisEmbedder())), suite).success


@pytest.mark.slow
def test_the_real_embedder_tells_varied_problems_from_repeats() -> None:
    from tasks.curation.diversity import minilm

    embedder = minilm()
    assert embedder is not None
    varied = [
        "Write a function that reverses a string.",
        "Merge overlapping meeting intervals and return them sorted.",
        "Count how often each word appears in a text, ignoring case.",
        "Find the shortest path through an unweighted grid.",
        "Parse an ISO date and return the weekday name.",
    ]
    repeats = ["Write a function that reverses a string.", "Reverse a list in place."] * 3
    high, low = diversity_report(varied, embedder), diversity_report(repeats, embedder)
    assert high["spread"] > 0.6 and high["near_duplicate_share"] == 0.0
    assert low["spread"] < 0.3 and low["near_duplicate_share"] > 0.5


def test_seeds_cover_every_topic_and_vary_concept_and_persona() -> None:
    topics = ["strings", "lists", "graphs"]
    concepts, personas = ["c1", "c2", "c3", "c4"], ["p1", "p2", "p3"]
    rows = list(seed_rows(36, topics, ["easy"], None, concepts, personas, seed=3))
    assert [r["topic"] for r in rows[:3]] == topics  # every topic before any repeats
    draws = {(r["topic"], r["concept"], r["persona"]) for r in rows}
    assert len(draws) == 36  # the whole space, each draw once
    assert {r["variant"] for r in rows} == {0}
    again = list(seed_rows(40, topics, ["easy"], None, concepts, personas, seed=3))
    assert again[:36] == rows and sum(r["variant"] for r in again) == 4  # repeats numbered
    assert [
        r["concept"] for r in seed_rows(3, topics, ["easy"], None, concepts, personas, seed=4)
    ] != [r["concept"] for r in rows[:3]]
    plain = list(seed_rows(4, topics, ["easy"]))  # without them, as before
    assert "concept" not in plain[0] and plain[3]["variant"] == 1
