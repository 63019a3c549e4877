"""Weights instead of discards: rank-normalised metadata.weight from any score, and the
top quartile of any score through the quantile step, from the shell."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tasks.curation.weights import rank_weights
from winnow.cli import app

runner = CliRunner()


def test_rank_weights_are_in_0_1_with_ties_averaged_and_direction():
    scores = np.array([3.0, 10.0, np.nan, 3.0, 7.0])
    w = rank_weights(scores)
    assert np.isnan(w[2])
    assert w[1] == 1.0  # the best weighs 1
    assert w[0] == w[3] == pytest.approx(1.5 / 4)  # tied lowest share ranks 1 and 2
    assert w[4] == pytest.approx(3 / 4)
    low = rank_weights(scores, higher_is_better=False)
    assert low[0] == pytest.approx(3.5 / 4) and low[1] == pytest.approx(1 / 4)
    # scale-free: any monotone transform of the scores gives the same weights
    assert np.allclose(rank_weights(np.exp(scores[[0, 1, 3, 4]])), w[[0, 1, 3, 4]])


def run(args: list[str], rows: list[dict], tmp_path):
    rejected = tmp_path / "rejected.jsonl"
    result = runner.invoke(
        app,
        ["curate", *args, "--rejected", str(rejected)],
        input="".join(json.dumps(r) + "\n" for r in rows),
    )
    assert result.exit_code == 0, result.output
    kept = [json.loads(x) for x in result.stdout.splitlines() if x.strip()]
    return kept, [json.loads(x) for x in rejected.read_text().splitlines()]


ROWS = [
    {"id": "a", "metadata": {"utility": 0.2}},
    {"id": "b", "metadata": {"utility": -0.1}},
    {"id": "c", "metadata": {"utility": 0.5}},
    {"id": "d", "metadata": {"utility": 0.1}},
    {"id": "e", "metadata": {}},
]


def test_cli_weight_keeps_every_scored_row_with_its_weight(tmp_path):
    kept, rejected = run(["weight", "--score-field", "metadata.utility"], ROWS, tmp_path)
    weights = {r["id"]: r["metadata"]["weight"] for r in kept}
    assert weights == {"a": 0.75, "b": 0.25, "c": 1.0, "d": 0.5}
    assert kept[0]["metadata"]["weight_source"] == "metadata.utility"
    assert [r["id"] for r in rejected] == ["e"] and "no score" in rejected[0]["reason"]


def test_cli_top_quartile_of_any_score_needs_no_field(tmp_path):
    kept, rejected = run(["quantile", "--score-field", "metadata.utility"], ROWS, tmp_path)
    assert [r["id"] for r in kept] == ["c"]
    assert len(rejected) == 4
