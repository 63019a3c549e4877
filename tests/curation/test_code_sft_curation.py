"""Curation steps switched on by parameters in the code SFT recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.recipes.test_code_sft_flow import params, read_jsonl, script
from winnow.testing.llm_server import LLMTestServer


@pytest.mark.slow
def test_contamination_and_near_dup_steps_join_the_funnel(tmp_path: Path, prefect_harness) -> None:
    from flows.code_sft import code_sft

    evals = tmp_path / "evals"
    evals.mkdir()
    # alpha's problem statement, long enough to share a 13-gram with it
    evals.joinpath("bench.jsonl").write_text(
        json.dumps({"question": "Write `f_alpha(x: int) -> int` returning x plus one. [alpha]"})
        + "\n"
    )
    with LLMTestServer(script()) as server:
        p = params(tmp_path, server, contamination_against=str(evals), near_dup_threshold=0.9)
        summary = code_sft(p)
    stages = [s["stage"] for s in summary["stages"]]
    assert stages[-2:] == ["contamination", "near_dedup"]
    kept = [r["metadata"]["topic"] for r in read_jsonl(Path(p.out) / "dataset.jsonl")]
    assert kept == ["beta"]
    rejected = read_jsonl(Path(p.out) / "rejected.jsonl")
    contaminated = [r for r in rejected if r["stage"] == "contamination"]
    assert [r["record"]["topic"] for r in contaminated] == ["alpha"]
    assert "bench" in contaminated[0]["reason"]
