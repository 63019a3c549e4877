"""Math word problems on the real embedded model (slow): the funnel accounts for both
problems, and every kept example really computes its stated answer when its program is
run again in the sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.recipes.math_word_problems.answers import parse_number, same_answer
from tasks.recipes.math_word_problems.recipe import MathParams
from tasks.recipes.math_word_problems.stages import RUNNER, computed_answer
from tasks.sandbox.select import get_sandbox


@pytest.mark.slow
@pytest.mark.timeout(2400)  # minutes on 2 idle cores; far more on a busy machine
def test_math_word_problems_on_the_embedded_model(tmp_path: Path, prefect_harness) -> None:
    from flows.math_word_problems import math_word_problems

    # min_kept=0: the small model may keep neither problem; the test accepts that
    params = MathParams(out=str(tmp_path / "out"), n_problems=2, sandbox="bwrap", min_kept=0)
    summary = math_word_problems(params)
    out = Path(params.out)
    funnel = json.loads((out / "funnel.json").read_text())
    stages = [s["stage"] for s in funnel["stages"]]
    assert stages == ["problems", "unique_problems", "static", "execute", "coherent", "judge"]
    for stage in funnel["stages"]:
        assert stage["n_in"] == stage["n_out"] + stage["n_rejected"], stage
    assert funnel["stages"][0]["n_in"] == 2
    assert funnel["stages"][0]["n_out"] >= 1  # the model wrote at least one usable answer
    assert funnel["llm_calls"] > 0 and funnel["tokens"]["completion"] > 0

    rows = [json.loads(line) for line in (out / "dataset.jsonl").read_text().splitlines()]
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert len(rows) == summary["kept"]
    assert len(rows) + len(rejected) == 2  # every problem ends somewhere
    assert all(r["stage"] and r["reason"] for r in rejected)
    sandbox = get_sandbox("bwrap")
    for row in rows:
        user, assistant = row["messages"]
        assert user["role"] == "user" and assistant["role"] == "assistant"
        meta = row["metadata"]
        assert meta["provenance"]["provider"] == "local"
        verdict = sandbox.run(
            {"program.py": meta["program"], "main.py": RUNNER.format(entry="solve")},
            ["python3", "-B", "main.py"],
        )
        value, why = computed_answer(verdict)
        assert why is None, why
        assert same_answer(parse_number(value), parse_number(meta["stated_answer"]), 1e-6)
