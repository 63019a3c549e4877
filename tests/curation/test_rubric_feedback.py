"""Feedback to the rubric: each judge criterion against the IFD and utility scores.

The table is computed from crafted records (no run); the side stage that scores the
judge's rejections runs against the test server's copy model (a named test double, not
a language model: a word already in the text is likely, a new one is not); the views
(summary markdown, report section, `winnow rounds` cells) are read from one table."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from tasks.curation.ifd import IFDConfig
from tasks.curation.rounds import feedback_by_criterion, feedback_cell
from tasks.curation.rubric_feedback import (
    Criterion,
    FeedbackConfig,
    Rubric,
    feedback_score_batch,
    rubric_feedback,
    teaches,
)
from tasks.curation.utility import UtilityConfig, load_dev
from tasks.llm.base import ProviderSpec
from tasks.pipeline.facts import RunFacts
from tasks.pipeline.feedback_view import feedback_table
from tasks.pipeline.report_content import ReportContent
from tasks.pipeline.report_html import render
from tasks.pipeline.stage import RunInfo, StageContext, StageResult
from tasks.pipeline.summary import summary_markdown

RUBRIC = Rubric(
    stage="judge",
    criteria=[
        Criterion(name="correctness", field="judge.correctness"),
        Criterion(name="style", field="judge.style"),
    ],
)


def row(i: str, correctness: str, style: str, ifd=None, utility=None) -> dict:
    meta = {k: v for k, v in (("ifd", ifd), ("utility", utility)) if v is not None}
    return {"id": i, "judge": {"correctness": correctness, "style": style}, "metadata": meta}


def by_name(table: dict) -> dict:
    return {c["criterion"]: c for c in table["criteria"]}


def test_teaches_needs_every_score_it_has_to_say_so():
    assert teaches({"metadata": {"ifd": 0.8}}) is True
    assert teaches({"metadata": {"ifd": 1.0}}) is False  # IFD >= 1 teaches nothing
    assert teaches({"metadata": {"utility": 0.0}}) is False  # no help to the dev set
    assert teaches({"metadata": {"ifd": 0.8, "utility": 0.2}}) is True
    assert teaches({"metadata": {"ifd": 0.8, "utility": -0.1}}) is False
    assert teaches({"metadata": {"ifd": 1.2, "utility": 0.3}}) is False
    assert teaches({"metadata": {}}) is None  # unscored: counts in neither
    assert teaches({"metadata": {"ifd": float("nan")}}) is None


def test_each_criterion_counts_rejections_that_would_teach_and_keeps_that_teach_nothing():
    rejected = [
        row("r1", "fail", "pass", ifd=0.6, utility=0.2),  # correctness alone; teaches
        row("r2", "fail", "fail", ifd=1.1),  # both failed; teaches nothing
        row("r3", "pass", "fail", ifd=0.7, utility=0.4),  # style alone; teaches
        row("r4", "pass", "fail", ifd=0.9, utility=-0.1),  # style alone; teaches nothing
        row("r5", "pass", "fail"),  # style alone; could not be scored
        {"id": "r6", "metadata": {"ifd": 0.5}},  # no verdict (malformed judge answer)
    ]
    kept = [
        row("k1", "pass", "pass", ifd=0.5, utility=0.1),
        row("k2", "pass", "pass", ifd=1.3),  # teaches nothing
        row("k3", "pass", "pass", ifd=0.8, utility=0.0),  # teaches nothing (utility)
        row("k4", "pass", "fail", ifd=0.4),  # a lenient judge kept it: style failed
    ]
    table = rubric_feedback(rejected, kept, RUBRIC)
    c = by_name(table)

    correctness = c["correctness"]["rejected"]
    assert (correctness["n"], correctness["alone"]) == (2, 1)
    assert (correctness["would_teach"], correctness["would_teach_alone"]) == (1, 1)
    assert correctness["ifd"]["n"] == 2
    assert correctness["ifd"]["mean"] == pytest.approx((0.6 + 1.1) / 2)
    assert correctness["utility"] == {"n": 1, "mean": 0.2, "median": 0.2}

    style = c["style"]["rejected"]
    assert (style["n"], style["alone"], style["would_teach"], style["would_teach_alone"]) == (
        4,
        3,
        1,
        1,
    )
    assert style["ifd"]["median"] == pytest.approx(0.9)  # of 1.1, 0.7, 0.9
    assert style["utility"]["mean"] == pytest.approx((0.4 - 0.1) / 2)

    assert c["correctness"]["kept"]["n"] == 4  # k4 passed correctness and was kept
    assert c["correctness"]["kept"]["teach_nothing"] == 2
    assert c["style"]["kept"]["n"] == 3  # k4 failed style: not on style's kept side
    assert c["style"]["kept"]["teach_nothing"] == 2
    assert c["style"]["kept"]["ifd"]["mean"] == pytest.approx((0.5 + 1.3 + 0.8) / 3)

    judge = table["judge"]
    assert judge["rejected"]["n"] == 5 and judge["rejected"]["would_teach"] == 2
    assert judge["kept"]["n"] == 4 and judge["kept"]["teach_nothing"] == 2
    assert table["judge_stage"] == "judge" and "IFD < 1" in table["rule"]


def test_a_criterion_checked_after_another_has_no_verdict_where_that_one_failed():
    rubric = Rubric(
        stage="filter",
        criteria=[
            Criterion(name="grounding", field="grounding.grounded", passes=[True]),
            Criterion(name="adherence", field="adherence", min=0.67, after="grounding"),
        ],
    )
    ungrounded = {"grounding": {"grounded": False}, "adherence": 0.0, "metadata": {"ifd": 0.5}}
    unsupported = {"grounding": {"grounded": True}, "adherence": 0.33, "metadata": {"ifd": 1.2}}
    no_check = {"grounding": None, "adherence": 0.9, "metadata": {"ifd": 0.7}}
    assert rubric.verdicts(ungrounded) == {"grounding": False, "adherence": None}
    assert rubric.verdicts(no_check) == {"grounding": None, "adherence": True}
    c = by_name(rubric_feedback([ungrounded, unsupported], [no_check], rubric))
    assert c["grounding"]["rejected"]["alone"] == 1  # the judges never voted on it
    assert c["grounding"]["rejected"]["would_teach"] == 1
    assert c["adherence"]["rejected"]["n"] == 1 and c["adherence"]["rejected"]["would_teach"] == 0
    assert c["adherence"]["kept"]["n"] == 1 and c["grounding"]["kept"]["n"] == 0


# --- the side stage: the judge's rejections scored by the curation scorers -----------------


def rejection(i: str, question: str, answer: str, correctness: str, style: str) -> dict:
    record = {"id": i, "problem": question, "solution": answer,
              "judge": {"correctness": correctness, "style": style}}  # fmt: skip
    return {"record_id": i, "stage": "judge", "reason": "judge: fail", "detail": {},
            "record": record}  # fmt: skip


def spec_for(server) -> ProviderSpec:
    return ProviderSpec(kind="openai-compatible", model="test-model", base_url=server.base_url)


def ctx() -> StageContext:
    return StageContext(run=RunInfo(run_id="t", recipe="t"), stage="rubric_feedback_score")


def test_the_judges_rejections_are_scored_and_passed_on_never_rejected(llm_server):
    fields = {"instruction_field": "problem", "answer_field": "solution"}
    spec = spec_for(llm_server)
    turns = [{"role": "user", "content": "add numbers"},
             {"role": "assistant", "content": "sort carefully"}]  # fmt: skip
    dev = load_dev([{"id": "d", "messages": turns}])
    config = FeedbackConfig(
        rubric=RUBRIC,
        ifd=IFDConfig(scorer=spec, prompt_format="plain", **fields),
        utility=UtilityConfig(dev=dev, scorer=spec, **fields),
    )
    rows = [
        rejection("helped", "sort the numbers please", "sort numbers", "fail", "pass"),
        rejection("unhelped", "add two integers", "bananas grow tall", "pass", "fail"),
        rejection("empty", "add two integers", "", "fail", "fail"),  # nothing to score
        {
            "record_id": "m",
            "stage": "judge",
            "reason": "judge answer malformed",
            "detail": {},
            "record": {"id": "m", "problem": "x y", "solution": "x"},
        },  # fmt: skip
    ]
    out = feedback_score_batch(rows, config, ctx())
    assert not out.rejected  # they stay the judge's rejections, nothing more
    assert [r["id"] for r in out.kept] == ["helped", "unhelped", "empty"]  # "m": no verdict
    meta = {r["id"]: r.get("metadata", {}) for r in out.kept}
    assert meta["helped"]["ifd"] < 1 and meta["unhelped"]["ifd"] == pytest.approx(1.0)
    # utility is scored where curation would score it: on rows IFD keeps by range
    assert meta["helped"]["utility"] > 0 and "utility" not in meta["unhelped"]
    assert meta["empty"] == {}
    assert out.kept[0]["judge_rejection"] == {"stage": "judge", "reason": "judge: fail"}
    # every score is a journaled call: 2 IFD texts per scored row, 1 dev + 1 one-shot read
    assert len(out.calls) == 2 * 2 + 2 and not any(c["error"] for c in out.calls)
    sent = llm_server.app.score_requests
    again = feedback_score_batch(rows, config, ctx())
    assert llm_server.app.score_requests == sent  # a re-run pays nothing: the journal
    assert all(c["cached"] for c in again.calls)
    assert [r.get("metadata") for r in again.kept] == [r.get("metadata") for r in out.kept]

    table = rubric_feedback(out.kept, [], RUBRIC)
    c = by_name(table)
    assert c["correctness"]["rejected"]["n"] == 2  # helped, empty
    assert c["correctness"]["rejected"]["would_teach"] == 1  # helped
    assert c["style"]["rejected"]["would_teach"] == 0  # unhelped: IFD 1
    assert math.isclose(c["style"]["rejected"]["ifd"]["mean"], 1.0, rel_tol=1e-6)


# --- one table, every view ------------------------------------------------------------------

TABLE = rubric_feedback(
    [row("r1", "fail", "pass", ifd=0.6, utility=0.2), row("r2", "pass", "fail", ifd=1.2)],
    [row("k1", "pass", "pass", ifd=0.5, utility=0.1), row("k2", "pass", "pass", ifd=1.4)],
    RUBRIC,
)


def test_the_table_has_a_row_per_criterion_and_columns_only_for_the_scores_present():
    head, rows = feedback_table(TABLE)
    assert head[:5] == ["criterion", "rejected", "alone", "would teach", "would teach (alone)"]
    assert "rejected IFD" in head and "kept utility" in head
    assert [r[0] for r in rows] == ["correctness", "style", "(judge: any criterion)"]
    correctness = dict(zip(head, rows[0], strict=True))
    assert correctness["would teach"] == "1 (100%)"
    assert correctness["teach nothing"] == "1 (50%)"
    assert correctness["rejected IFD"] == "0.600 (0.600)"
    ifd_only = rubric_feedback([row("r", "fail", "pass", ifd=0.6)], [], RUBRIC)
    assert not any("utility" in h for h in feedback_table(ifd_only)[0])


def test_summary_and_report_show_the_table():
    md = summary_markdown("run-1", "completed", [], {}, [], [], feedback=TABLE)
    assert "#### Rubric feedback (judge stage `judge`)" in md
    assert "| correctness | 1 | 1 | 1 (100%) | 1 |" in md
    assert "Rubric feedback" not in summary_markdown("run-1", "completed", [], {}, [], [])

    funnel = {"stages": [], "kept": 2, "rubric_feedback": TABLE}
    now = datetime.now(UTC)
    page = render(RunFacts(run_id="r", recipe="x", published_at=now, funnel=funnel),
                  ReportContent())  # fmt: skip
    assert '<table id="rubric-feedback">' in page
    assert 'data-criterion="style"' in page and "0.600 (0.600)" in page
    del funnel["rubric_feedback"]
    page = render(RunFacts(run_id="r", recipe="x", published_at=now, funnel=funnel),
                  ReportContent())  # fmt: skip
    assert "rubric-feedback" not in page


def test_rounds_carry_the_figures_of_each_criterion():
    figures = feedback_by_criterion(TABLE)
    assert list(figures) == ["correctness", "style", "(judge)"]
    assert figures["correctness"]["would_teach"] == 1
    assert figures["style"]["kept"] == 2 and figures["style"]["teach_nothing"] == 1
    assert figures["style"]["rejected_ifd_mean"] == pytest.approx(1.2)
    assert feedback_cell(figures["style"]) == (
        "rejected 1 (0 would teach) · kept 2 (1 teach nothing)"
    )
    assert feedback_cell(None) == "–" and feedback_by_criterion(None) == {}


def test_the_parameter_is_off_by_default_and_needs_a_score_and_a_rubric():
    from tasks.curation.optional import CurationParams, plan_curation
    from tasks.llm.base import ConfigError

    fields = ["problem", "solution"]
    assert (
        plan_curation(CurationParams(ifd_max=1.0), fields, "problem", None, RUBRIC).feedback is None
    )
    on = plan_curation(
        CurationParams(ifd_max=1.0, rubric_feedback=True), fields, "problem", None, RUBRIC
    )
    assert on.feedback is not None and on.feedback.ifd == on.ifd and on.feedback.utility is None
    with pytest.raises(ConfigError, match="needs a score"):
        plan_curation(CurationParams(rubric_feedback=True), fields, "problem", None, RUBRIC)
    with pytest.raises(ConfigError, match="no judge criteria"):
        plan_curation(CurationParams(ifd_max=1.0, rubric_feedback=True), fields, "problem", None)


def test_the_recipes_declare_their_judges_criteria():
    from tasks.recipes.code_sft.recipe import RUBRIC as CODE
    from tasks.recipes.rag_qa.recipe import rubric

    assert CODE.stage == "judge" and [c.name for c in CODE.criteria] == ["correctness", "style"]
    judged = {"judge": {"correctness": "pass", "style": "fail"}}
    assert CODE.verdicts(judged) == {"correctness": True, "style": False}
    rag = rubric(0.67)
    assert rag.stage == "filter"
    answer = {"adherence": 0.33, "adherence_judge": {"grounding": {"grounded": True}}}
    assert rag.verdicts(answer) == {"grounding": True, "adherence": False}


# --- the engine's side stage ---------------------------------------------------------------


def _side(rows: list[dict], config: None, ctx: StageContext) -> StageResult:
    """A stage that pays for one call per row and rejects one row."""
    from tasks.llm.base import ChatResult

    out = StageResult()
    for r in rows:
        result = ChatResult(key=f"k-{r['id']}", text="x", provider="p", model="m", cost_usd=0.5)
        out.add_calls([result], "score", "1")
        if r["id"] == "b":
            out.reject(r, ctx.stage, "side: no")
        else:
            out.kept.append(dict(r, seen=True))
    return out


def test_a_side_stage_is_costed_but_neither_counted_in_the_funnel_nor_rejecting(tmp_path):
    from pydantic import BaseModel

    from tasks.pipeline.run import Run
    from tasks.pipeline.runner import write_input_shards
    from tasks.pipeline.stage import Stage

    class Params(BaseModel):
        shard_size: int = 2
        out: str = str(tmp_path / "out")

    run = Run("side-test", Params())
    shards = write_input_shards([{"id": i} for i in "abc"], 2, "side-test")
    main = run.stage(Stage("main", lambda rows, c, ctx: StageResult(kept=rows)), shards, None)
    side = run.side_stage(Stage("aside", _side), main.kept, None)
    assert sorted(r["id"] for r in side.kept_rows()) == ["a", "c"]
    run.publish(main, lambda r: {"id": r["id"], "messages": []})
    run.finish("completed")
    assert [f["stage"] for f in run.catalog.funnel(run.run_id)] == ["main"]
    assert run.catalog.rejections(run.run_id) == []  # "b" is not a rejection of the run
    assert (tmp_path / "out" / "rejected.jsonl").read_text() == ""
    costs = run.catalog.costs(run.run_id)
    assert costs["calls"] == 3 and costs["cost_usd"] == pytest.approx(1.5)
