"""PHP translation on the real embedded model (slow), over the verified Python examples
that ship in examples/php/: every row ends kept or rejected with a reason, and every kept
translation really passes its PHP tests when run again in the sandbox."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tasks.execution.extract import code_blocks
from tasks.recipes.php_translation.inputs import DEFAULT_SOURCE
from tasks.recipes.php_translation.recipe import PHPTranslationParams
from tasks.sandbox.select import get_sandbox
from tasks.sandbox.verify import Case, verify_cases

N_ROWS = 3  # of the 4 shipped examples: enough for every path to be likely, and tiny


@pytest.mark.slow
@pytest.mark.timeout(2700)  # ~5 min on 2 idle cores; far more on a busy machine
def test_php_translation_on_the_embedded_model(tmp_path: Path, prefect_harness) -> None:
    from flows.php_translation import php_translation

    params = PHPTranslationParams(
        source=str(DEFAULT_SOURCE),
        limit=N_ROWS,
        out=str(tmp_path / "out"),
        max_revision_rounds=1,
        max_tokens=300,
        sandbox="bwrap",
    )
    started = time.monotonic()
    summary = php_translation(params)
    seconds = time.monotonic() - started
    out = Path(params.out)
    funnel = json.loads((out / "funnel.json").read_text())
    print(json.dumps({"wall_s": round(seconds), **funnel}, indent=1))  # for the run's report

    n_rows = N_ROWS
    assert [s["stage"] for s in funnel["stages"]] == [
        "python_check", "translate", "execute", "coverage", "faithfulness",
    ]  # fmt: skip
    for stage in funnel["stages"]:
        assert stage["n_in"] == stage["n_out"] + stage["n_rejected"], stage
    assert funnel["stages"][0] == {**funnel["stages"][0], "n_in": n_rows, "n_out": n_rows}
    assert funnel["llm_calls"] >= n_rows and funnel["tokens"]["completion"] > 0

    rows = [json.loads(line) for line in (out / "dataset.jsonl").read_text().splitlines()]
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert len(rows) == summary["kept"] >= 1
    assert len(rows) + len(rejected) == n_rows  # every input row ends somewhere
    assert all(r["stage"] and r["reason"] for r in rejected)
    cases = []
    for row in rows:
        meta = row["metadata"]
        assert meta["php_assertions"] >= meta["python_assertions"] >= 1
        assert meta["faithfulness"]["faithful"] is True
        assert meta["provenance"]["provider"] == "local"
        solution = code_blocks(row["messages"][1]["content"])[0]
        cases.append(Case(id=row["id"], solution=solution, tests=meta["tests"]))
    verdicts = verify_cases(cases, "php", get_sandbox("bwrap"))
    assert all(v.passed for v in verdicts), [v.reason for v in verdicts]
