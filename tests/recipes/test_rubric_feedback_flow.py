"""Rubric feedback through the code SFT recipe, end to end, against the test LLM server
(a named test double): IFD and utility on, ``rubric_feedback=true``. The judge's rejection
(epsilon: style fail) is scored by the same scorer as the kept rows, stays rejected, and
the table lands in funnel.json, report.html, the run's summary, `winnow show` and, after
a second run with a relaxed rubric, side by side in `winnow rounds`.

The recipe's scorer is the embedded model; here the test server's copy model (a double,
not a language model: a word already in the text is likely, a new one is not) stands in
for it, through the same journaled scorer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tasks.llm.base import ProviderSpec
from tests.recipes.test_code_sft_flow import params, read_jsonl, script
from winnow.cli import app
from winnow.testing.llm_server import LLMTestServer

# A verified example whose answer uses what every candidate shows (def, return, +):
# each candidate, as a demonstration, makes it likelier (utility > 0).
DEV = {
    "id": "dev-1",
    "messages": [
        {"role": "user", "content": "Write g(x) giving x times two."},
        {"role": "assistant", "content": "def g(x):\n    return x + x"},
    ],
}


@pytest.fixture
def server():
    with LLMTestServer(script()) as s:
        yield s


@pytest.fixture
def score_with(monkeypatch):
    """Point the curation scorers at a test server (instead of the embedded model)."""
    from tasks.curation import ifd, utility
    from tasks.llm import scoring

    def use(server: LLMTestServer) -> None:
        spec = ProviderSpec(kind="openai-compatible", model="test-model", base_url=server.base_url)
        for module in (ifd, utility):
            monkeypatch.setattr(module, "scorer_for", lambda _spec: scoring.scorer_for(spec))

    return use


def _summary_artifact(flow_run_id: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    [summary] = [a for a in found if a.key == "code-sft-summary"]
    return str(summary.data)


def by_name(table: dict) -> dict:
    return {c["criterion"]: c for c in table["criteria"]}


@pytest.mark.slow
def test_the_judges_rejections_are_scored_and_related_to_its_criteria(
    tmp_path, server, score_with, prefect_harness
) -> None:
    from flows.code_sft import code_sft
    from tasks.store.catalog import Catalog

    score_with(server)
    dev = tmp_path / "dev.jsonl"
    dev.write_text(json.dumps(DEV) + "\n")
    p = params(tmp_path, server, ifd_max=1.0, utility_dev=str(dev), rubric_feedback=True)
    first = code_sft(p)
    out = Path(p.out)

    # the rubric feedback changes nothing of what is kept and why rows left
    kept = read_jsonl(out / "dataset.jsonl")
    assert sorted(r["metadata"]["topic"] for r in kept) == ["alpha", "beta"]
    assert all(0 < r["metadata"]["ifd"] < 1 and r["metadata"]["utility"] > 0 for r in kept)
    rejected = read_jsonl(out / "rejected.jsonl")
    judge = [r for r in rejected if r["stage"] == "judge"]
    assert [r["record"]["topic"] for r in judge] == ["epsilon"]
    assert not [r for r in rejected if r["stage"] == "rubric_feedback_score"]
    funnel = json.loads((out / "funnel.json").read_text())
    stages = [s["stage"] for s in funnel["stages"]]
    assert stages[-5:] == ["dedup", "ifd_score", "ifd_select", "utility_score", "utility_select"]
    assert funnel["kept"] == 2 and first["kept"] == 2

    # the table: epsilon failed style alone, and its scores say it would have taught
    table = funnel["rubric_feedback"]
    assert table == first["rubric_feedback"] and table["judge_stage"] == "judge"
    c = by_name(table)
    style = c["style"]["rejected"]
    assert (style["n"], style["alone"], style["would_teach"], style["would_teach_alone"]) == (
        1,
        1,
        1,
        1,
    )
    assert style["ifd"]["n"] == 1 and 0 < style["ifd"]["mean"] < 1
    assert style["utility"]["n"] == 1 and style["utility"]["mean"] > 0
    assert c["correctness"]["rejected"]["n"] == 0
    assert c["correctness"]["kept"]["n"] == 2 and c["style"]["kept"]["n"] == 2
    assert c["style"]["kept"]["teach_nothing"] == 0
    assert c["style"]["kept"]["ifd"]["mean"] == pytest.approx(
        sum(r["metadata"]["ifd"] for r in kept) / 2, rel=1e-5
    )

    # the scores of the rejection were journaled calls of the run, costed like any other
    catalog = Catalog()
    run_id = funnel["run_id"]
    by_stage = {s["stage"]: s for s in catalog.costs(run_id)["by_stage"]}
    assert by_stage["rubric_feedback_score"]["calls"] == 2 + 2  # IFD: 2 texts; utility: 1+1
    assert "rubric_feedback_score" not in {f["stage"] for f in catalog.funnel(run_id)}

    # the run's summary on its Prefect page says it too
    summary = _summary_artifact(catalog.get_run(run_id)["flow_run_id"])
    assert "#### Rubric feedback (judge stage `judge`)" in summary
    assert "| style | 1 | 1 | 1 (100%) | 1 |" in summary

    page = (out / "report.html").read_text()
    assert '<table id="rubric-feedback">' in page and 'data-criterion="style"' in page
    shown = CliRunner().invoke(app, ["show", run_id], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "Rubric feedback (judge stage judge)" in shown.output
    assert "would teach" in shown.output and "style" in shown.output
    as_json = json.loads(CliRunner().invoke(app, ["show", run_id, "--json"]).output)
    assert as_json["rubric_feedback"] == table

    # The data engineer relaxes the rubric (one pass of two is enough): epsilon is kept,
    # and every score it needs was paid for by the first run's feedback: the journal.
    sent = server.app.score_requests
    second = code_sft(p.model_copy(update={"min_judge_score": 1}))
    assert server.app.score_requests == sent
    assert second["kept"] == 3
    relaxed = by_name(second["rubric_feedback"])
    assert relaxed["style"]["rejected"]["n"] == 0
    assert relaxed["correctness"]["kept"]["n"] == 3 and relaxed["style"]["kept"]["n"] == 2

    # `rounds` carries the figures from run to run
    both = json.loads(CliRunner().invoke(app, ["rounds", "code-sft", "--all", "--json"]).output)
    assert both["criteria"] == ["correctness", "style", "(judge)"]
    styles = [r["rubric_feedback"]["style"] for r in both["rounds"]]
    assert [(s["rejected"], s["would_teach"], s["kept"]) for s in styles] == [(1, 1, 2), (0, 0, 2)]
    table_out = CliRunner().invoke(app, ["rounds", "code-sft", "--all"], env={"COLUMNS": "250"})
    assert table_out.exit_code == 0, table_out.output
    assert "rubric: style" in table_out.output
    assert "rejected 1 (1 would teach)" in table_out.output


@pytest.mark.slow
def test_rag_qa_relates_its_grounding_check_and_adherence_judges_to_ifd(
    tmp_path, score_with, prefect_harness
) -> None:
    """The RAG recipe's rubric: the check by code (grounding), then the judges' adherence
    (asked only where grounding passed). P1-multi_hop is dropped at 0.33 adherence."""
    from flows.rag_qa import rag_qa
    from tests.recipes import test_rag_qa_flow as rag

    with LLMTestServer(rag.script()) as rag_server:
        score_with(rag_server)
        p = rag.params(tmp_path, rag_server.base_url, ifd_max=1.0, rubric_feedback=True)
        doc = rag_qa(p)
    funnel = json.loads((Path(p.out) / "funnel.json").read_text())
    table = funnel["rubric_feedback"]
    assert table == doc["rubric_feedback"] and table["judge_stage"] == "filter"
    c = by_name(table)
    adherence = c["adherence"]["rejected"]
    assert (adherence["n"], adherence["alone"], adherence["ifd"]["n"]) == (1, 1, 1)
    assert adherence["would_teach"] == int(adherence["ifd"]["mean"] < 1)
    assert c["grounding"]["rejected"]["n"] == 0
    stages = {s["stage"]: s for s in funnel["stages"]}
    # the kept side: every row the filter kept, as IFD scored it; teach nothing = IFD >= 1
    assert c["adherence"]["kept"]["n"] == stages["ifd_score"]["n_out"] == 3
    assert c["adherence"]["kept"]["teach_nothing"] == stages["ifd_select"]["n_rejected"]
    kept = read_jsonl(Path(p.out) / "dataset.jsonl")
    assert kept and all(r["metadata"]["ifd"] < 1 for r in kept)
