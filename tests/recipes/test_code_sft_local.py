"""Code SFT on the real embedded model (slow): the structure is right and every kept
example really passes its tests when run again in the sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.execution.extract import code_blocks
from tasks.recipes.code_sft.recipe import CodeSFTParams
from tasks.sandbox.select import get_sandbox
from tasks.sandbox.verify import Case, verify_cases


@pytest.mark.slow
@pytest.mark.timeout(2700)  # minutes on 2 idle cores; far more on a busy machine
def test_code_sft_on_the_embedded_model(tmp_path: Path, prefect_harness) -> None:
    from flows.code_sft import code_sft

    params = CodeSFTParams(
        out=str(tmp_path / "out"),
        n_problems=3,
        n_solutions=2,
        max_revision_rounds=1,
        solution_max_tokens=600,
        difficulties=["easy"],
        sandbox="bwrap",
    )
    summary = code_sft(params)
    out = Path(params.out)
    funnel = json.loads((out / "funnel.json").read_text())
    assert [s["stage"] for s in funnel["stages"]] == [
        "problems", "unique_problems", "solutions", "static", "execute", "coherent", "judge",
        "dedup",
    ]  # fmt: skip
    for stage in funnel["stages"]:
        assert stage["n_in"] == stage["n_out"] + stage["n_rejected"], stage
    assert funnel["llm_calls"] > 0 and funnel["tokens"]["completion"] > 0

    rows = [json.loads(line) for line in (out / "dataset.jsonl").read_text().splitlines()]
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert len(rows) == summary["kept"] >= 1
    assert len(rows) + len(rejected) >= 4  # every candidate ends somewhere
    cases = []
    for row in rows:
        user, assistant = row["messages"]
        assert user["role"] == "user" and assistant["role"] == "assistant"
        solution = code_blocks(assistant["content"])[0]
        # the dialog agrees with itself: the tests it ran are in the answer
        assert row["metadata"]["tests"].strip() in assistant["content"]
        assert "check function" not in user["content"].lower()
        cases.append(Case(id=row["id"], solution=solution, tests=row["metadata"]["tests"]))
        assert row["metadata"]["provenance"]["provider"] == "local"
        assert row["metadata"]["judge"]["score"] == 2
    verdicts = verify_cases(cases, "python", get_sandbox("bwrap"))
    assert all(v.passed for v in verdicts), [v.reason for v in verdicts]
