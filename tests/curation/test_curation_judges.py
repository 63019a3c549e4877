"""Judge committee against the OpenAI-compatible test double (the real client code):
majority and mean decisions, every vote kept, a judge that never parses casts no vote."""

from __future__ import annotations

import json

import pytest

from tasks.curation.judges import JudgeCommitteeConfig, judge_committee_stage, tally
from tasks.llm.base import ProviderSpec
from tasks.llm.clients import close_all
from tasks.pipeline.runner import run_stage, write_input_shards
from tasks.pipeline.stage import RunInfo
from tasks.store.shards import iter_shards
from winnow.testing.llm_server import LLMTestServer, Rule, Script

RUN = RunInfo(run_id="r1", recipe="test")


def vote(score: int, verdict: str) -> str:
    return json.dumps({"score": score, "verdict": verdict, "reason": f"{verdict} it"})


@pytest.fixture
def judges():
    strict = Script(
        models=["strict-a", "strict-b"],
        rules=[
            Rule(pattern=r"\[good\]", replies=[vote(8, "keep")]),
            Rule(pattern=r"\[meh\]", replies=[vote(6, "reject")]),
            Rule(pattern=r"\[bad\]", replies=[vote(2, "reject")]),
        ],
    )
    lenient = Script(
        models=["lenient"],
        rules=[
            Rule(pattern=r"\[broken\]", replies=["not json at all"], then="last"),
            Rule(pattern=r".", replies=[vote(9, "keep")]),
        ],
    )
    with LLMTestServer(strict) as a, LLMTestServer(lenient) as b:
        specs = [
            ProviderSpec(kind="openai-compatible", model="strict-a", base_url=a.base_url),
            ProviderSpec(kind="openai-compatible", model="strict-b", base_url=a.base_url),
            ProviderSpec(kind="openai-compatible", model="lenient", base_url=b.base_url),
        ]
        yield specs
        close_all()


ROWS = [
    {"id": "g", "answer": "[good] answer"},
    {"id": "m", "answer": "[meh] answer"},
    {"id": "b", "answer": "[bad] answer"},
    {"id": "x", "answer": "[broken] [good] answer"},
]


def test_majority_keeps_what_most_judges_keep_and_records_every_vote(judges) -> None:
    config = JudgeCommitteeConfig(judges=judges, fields=["answer"], aggregate="majority")
    out = run_stage(judge_committee_stage(), write_input_shards(ROWS, 10, "t"), config, RUN)
    kept = {r["id"]: r for r in out.kept_rows()}
    assert sorted(kept) == ["g", "x"]
    g = kept["g"]["committee"]
    assert [v["model"] for v in g["votes"]] == ["strict-a", "strict-b", "lenient"]
    assert [v["score"] for v in g["votes"]] == [8, 8, 9]
    assert g["keep_votes"] == 3 and g["score"] == pytest.approx(25 / 3)
    # the lenient judge never answers JSON for [broken]: two valid votes, both keep
    x = kept["x"]["committee"]
    assert x["n_votes"] == 2 and "error" in x["votes"][2]
    reasons = {r["record_id"]: r["reason"] for r in out.rejected_rows()}
    assert reasons == {
        "m": "committee: 1 of 3 judges voted keep",
        "b": "committee: 1 of 3 judges voted keep",
    }
    calls = list(iter_shards([s.calls.path for s in out.shards]))
    # 4 rows × 3 judges, plus 2 re-asks of the unparsable answer; all under the template
    assert len(calls) == 14 and {c["template"] for c in calls} == {"curation/judge"}


def test_mean_score_decides_with_aggregate_mean(judges) -> None:
    config = JudgeCommitteeConfig(judges=judges, fields=["answer"], aggregate="mean", min_mean=6.5)
    out = run_stage(judge_committee_stage("mean"), write_input_shards(ROWS, 10, "t"), config, RUN)
    # means: g 8.33, m 7.0, b 4.33, x 8.5 (two votes)
    assert sorted(r["id"] for r in out.kept_rows()) == ["g", "m", "x"]
    (rej,) = list(out.rejected_rows())
    assert rej["record_id"] == "b" and rej["reason"] == "committee: mean score 4.33 < 6.5"
    assert len(rej["detail"]["votes"]) == 3


def test_too_few_valid_votes_rejects() -> None:
    config = JudgeCommitteeConfig(judges=[ProviderSpec(kind="local")], fields=["a"], min_votes=2)
    decision = tally(
        [{"judge": "j", "score": 9, "verdict": "keep"}, {"judge": "k", "error": "x"}], config
    )
    assert decision["keep"] is False and decision["why"] == "only 1 valid vote(s) of 2"
