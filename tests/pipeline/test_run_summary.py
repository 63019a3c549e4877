"""What a run tells on its page in the Prefect UI: one summary artifact, made first, with
the funnel in percentages, time and cost per stage, the kept total and cost per kept
example (an unknown price flagged), the top rejection reasons per stage, the gates and
where the dataset went; each gate a named task run with a readable artifact of every
expectation, its observed value, the severity and the duration; keys prefixed by recipe.
The markdown is checked on its own, then on a real run of a recipe against the scripted
test LLM server (a test double) on a real Prefect server."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tasks.gates import gx
from tasks.gates.suites import SuiteSpec
from tasks.pipeline.artifacts import gate_key
from tasks.pipeline.summary import gate_markdown, summary_markdown

FUNNEL = [
    {"stage": "questions", "n_in": 12, "n_out": 6, "n_rejected": 6, "seconds": 2.5},
    {"stage": "answers", "n_in": 6, "n_out": 3, "n_rejected": 3, "seconds": 1.25},
]
COSTS = {
    "calls": 18,
    "cached_calls": 2,
    "cost_usd": 0.03,
    "by_stage": [
        {"stage": "questions", "calls": 12, "cost_usd": 0.02},
        {"stage": "answers", "calls": 6, "cost_usd": 0.01},
    ],
    "by_model": [
        {"provider": "openai", "model": "gpt-4o-mini", "calls": 12},
        {"provider": "openai", "model": "my-own-model", "calls": 6},
        {"provider": "local", "model": "embedded", "calls": 1},
    ],
}


def test_the_summary_says_the_funnel_costs_reasons_gates_and_output() -> None:
    reasons = [{"stage": "questions", "reason": f"reason {i}", "count": 10 - i} for i in range(7)]
    reasons.append({"stage": "answers", "reason": "judge said | no", "count": 3})
    gates = [
        {"stage": "questions", "suite": "rag_qa.questions", "severity": "critical",
         "success": True, "n_failed": 0, "n_rows": 6, "duration_s": 0.5},
    ]  # fmt: skip
    md = summary_markdown(
        "rag-qa-1", "completed", FUNNEL, COSTS, reasons, gates, out="/data/out", report="file:///r"
    )
    assert md.startswith("### Run `rag-qa-1`: **completed**")
    assert "**kept 3** from 12 inputs (25%)" in md
    fanned = summary_markdown("r", "completed", [{**FUNNEL[1], "n_in": 1}], COSTS, [], [])
    assert "**kept 3** from 1 inputs ·" in fanned  # no share above 100%
    assert "cost per kept example **$0.0100 ⚠**" in md
    assert "| questions | 12 | 6 | 50% | 6 | 2.5 | 12 | 0.0200 ⚠ |" in md
    assert "| answers | 6 | 3 | 50% | 3 | 1.2 | 6 | 0.0100 ⚠ |" in md
    # a known model is priced, the local one costs nothing: only the unknown one is named
    assert "**Unknown price** for my-own-model (openai)" in md and "gpt-4o-mini" not in md
    assert "| questions | 10 | reason 0 |" in md and "| questions | 6 | reason 4 |" in md
    assert "reason 5" not in md  # five reasons a stage
    assert "| answers | 3 | judge said \\| no |" in md
    assert "| questions | rag_qa.questions | critical | passed | 6 | 0.50 |" in md
    assert "Dataset published to `/data/out`" in md and "[report.html](file:///r)" in md


def test_a_failed_run_without_rejections_or_prices_says_so() -> None:
    costs = {"calls": 0, "cost_usd": 0.0, "by_stage": [], "by_model": []}
    md = summary_markdown("r", "failed", FUNNEL[:1], costs, [], [], error="LLMError: refused")
    assert "**failed**" in md and "**Failed:** LLMError: refused" in md
    assert "Unknown price" not in md and "⚠" not in md
    assert "No row was rejected." in md and "Nothing published." in md


def test_gate_keys_carry_the_recipe() -> None:
    assert gate_key("rag-qa", "rag_qa.questions") == "rag-qa-gate-questions"
    assert gate_key("rag-qa", "shared.suite") == "rag-qa-gate-shared-suite"


def test_a_gate_card_lists_every_expectation_its_observed_value_severity_and_time() -> None:
    spec = SuiteSpec(
        name="t.questions",
        severity="critical",
        description="Questions are well formed.",
        expectations=[
            {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "q"}},
            {"type": "expect_column_mean_to_be_between",
             "kwargs": {"column": "n", "min_value": 5, "max_value": 9}},
        ],
    )  # fmt: skip
    result = gx.validate(pd.DataFrame({"q": ["a", None, "c"], "n": [1, 2, 3]}), spec)
    expectations = [e.model_dump(mode="json") for e in spec.expectations]
    md = gate_markdown("questions", result.model_dump(mode="json"), expectations, spec.description)
    assert md.startswith("### Gate `t.questions` after stage `questions`: **FAILED**")
    assert "severity **critical** (a failure stops the run)" in md
    assert "3 expectations, 2 failed · 3 rows ·" in md
    assert "Questions are well formed." in md
    rows = {
        line.split(" | ")[0].lstrip("| "): line for line in md.splitlines() if "expect_" in line
    }
    assert "passed | observed_value=3" in rows["expect_table_row_count_to_be_between"]
    assert "**failed** | " in rows["expect_column_values_to_not_be_null"]
    assert "unexpected_count=1" in rows["expect_column_values_to_not_be_null"]
    assert "observed_value=2" in rows["expect_column_mean_to_be_between"]


def _artifacts_of(flow_run_id: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])),
            sort=ArtifactSort.CREATED_DESC,
        )[::-1]


def _task_run_names(flow_run_id: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return [r.name for r in runs]


@pytest.mark.slow
def test_a_real_run_tells_its_story_on_its_page(tmp_path: Path, prefect_harness) -> None:
    from flows.math_word_problems import math_word_problems
    from tasks.recipes.math_word_problems.recipe import MathParams
    from tasks.store.catalog import Catalog
    from winnow.testing.llm_server import LLMTestServer
    from winnow.testing.scenarios.math_word_problems import SCENARIO

    with LLMTestServer(SCENARIO.script()) as server:
        given = SCENARIO.params(tmp_path, server.base_url)
        doc = math_word_problems(MathParams(**given))
    run = Catalog().get_run(doc["run_id"])
    assert run is not None and run["flow_run_id"]
    found = _artifacts_of(run["flow_run_id"])
    keys = [a.key for a in found]
    assert keys[0] == "math-word-problems-summary", keys  # the first one made
    assert keys.count("math-word-problems-summary") == 1  # rewritten, not made again
    assert {"math-word-problems-gate-problems", "math-word-problems-gate-kept"} <= set(keys)
    summary = found[0].data
    assert f"**kept {doc['kept']}**" in summary and "**completed**" in summary
    assert "| problems |" in summary and "%" in summary
    assert "malformed model answer" in summary  # the top reasons, with their counts
    assert "**Unknown price** for test-model" in summary  # no price given to the test model
    assert str(Path(given["out"]).absolute()) in summary and "report.html" in summary
    gate = next(a for a in found if a.key == "math-word-problems-gate-kept")
    assert "severity **" in gate.data and "| expectation | arguments | result | observed |" in (
        gate.data
    )
    examples = next(a for a in found if a.key == "math-word-problems-examples").data
    assert "**user**" in examples and "**assistant**" in examples and "```json" not in examples
    names = _task_run_names(run["flow_run_id"])
    assert {"gate math_word_problems.problems", "gate math_word_problems.kept"} <= {
        n.rsplit("-", 1)[0] for n in names
    }, names
