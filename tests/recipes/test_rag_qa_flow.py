"""The RAG QA recipe end to end against the scripted test LLM server (a named test
double), so that every path happens once: supported answer kept, unsupported answer
dropped with its explanation, unanswerable question handled (abstention kept, made-up
answer dropped), an answerable question declined, malformed judge output, a duplicate
question; then the same run through the OpenAI and Anthropic batch doubles, a batch
still running when the flow stops, and an unbalanced question mix stopped by the gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.gates.gx import GateFailed
from tasks.llm.journal import Journal
from tasks.recipes.rag_qa.recipe import RAGQAParams
from winnow.testing.batch_server import AnthropicBatchServer, BatchBehaviour, OpenAIBatchServer
from winnow.testing.llm_server import LLMTestServer, Rule, Script

P1 = (
    "[P1] The Harbour Lighthouse of Vennmouth was completed in 1868 after four years of "
    "work. It stands 34 metres tall and was built from granite quarried on Skarra. Its "
    "first keeper, Agnes Holm, tended the light for 27 years."
)
P2 = (
    "[P2] A sourdough starter is flour and water colonised by wild yeasts and lactic acid "
    "bacteria. The yeasts make carbon dioxide, which raises the dough, and the bacteria "
    "make acids that give the bread its sour taste. It is fed once a day."
)


def question(tag: str) -> str:
    return json.dumps({"question": f"[{tag}] What does the passage say about it?"})


def vote(supported: bool, why: str) -> str:
    return json.dumps({"reasoning": why, "supported": "yes" if supported else "no"})


YES = vote(True, "The answer restates the passage.")
JUDGE = r"You check answers for hallucinations.*"


def script() -> Script:
    rules = [
        # judges (their prompt holds the question tag too, so they come first)
        Rule(pattern=JUDGE + r"\[P1-factual\]", replies=[YES]),
        Rule(
            pattern=JUDGE + r"\[P1-multi_hop\]",
            replies=[
                vote(False, "The passage never says Agnes Holm built the lighthouse."),
                vote(False, "Agnes Holm was its keeper, not its builder."),
                YES,
            ],
        ),
        Rule(pattern=JUDGE + r"\[P1-unanswerable\]", replies=[YES]),
        Rule(pattern=JUDGE + r"\[P1-numeric\]", replies=["I think it is fine", "hmm"]),
        Rule(pattern=JUDGE + r"\[P2-factual\]", replies=[YES, "no verdict here", YES]),
        # answers
        Rule(pattern=r"Question: \[P1-factual\]", replies=["It stands 34 metres tall."]),
        Rule(
            pattern=r"Question: \[P1-multi_hop\]",
            # every word and number is in the passage (so it passes the grounding check
            # by code), but the relation is wrong: only the judge can see it
            replies=["Agnes Holm built the lighthouse from granite in four years."],
        ),
        Rule(
            pattern=r"Question: \[P1-unanswerable\]",
            replies=["The context does not say. It only gives the height and the keeper."],
        ),
        Rule(pattern=r"Question: \[P1-numeric\]", replies=["Four years."]),
        Rule(pattern=r"Question: \[P2-factual\]", replies=["It is fed once a day."]),
        Rule(pattern=r"Question: \[P2-multi_hop\]", replies=["The context does not say."]),
        Rule(pattern=r"Question: \[P2-unanswerable\]", replies=["It must be kept at 24 °C."]),
        # questions, by passage and kind; P2's numeric question repeats its factual one
        Rule(pattern=r"\[P2\].*Write one numeric question", replies=[question("P2-factual")]),
        *[
            Rule(pattern=rf"\[{p}\].*one {k.replace('_', '-')} ", replies=[question(f"{p}-{k}")])
            for p in ("P1", "P2")
            for k in ("factual", "multi_hop", "numeric", "unanswerable")
        ],
    ]  # fmt: skip
    return Script(models=["test-model", "claude-haiku-4-5"], rules=rules)


def documents(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a_lighthouse.md").write_text("# Lighthouse\n\n" + P1 + "\n")
    (folder / "b_sourdough.txt").write_text(P2 + "\n")
    return folder


def params(tmp_path: Path, base_url: str, **overrides) -> RAGQAParams:
    fields = dict(
        out=str(tmp_path / "out"),
        provider="openai-compatible",
        model="test-model",
        base_url=base_url,
        documents=str(documents(tmp_path)),
        questions_per_passage=4,
        judges=3,
        shard_size=3,
    )
    fields.update(overrides)
    return RAGQAParams(**fields)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def check_outcome(out: Path) -> dict:
    """The published files of the scripted run (live or batched are the same)."""
    kept = {r["id"]: r for r in read_jsonl(out / "dataset.jsonl")}
    tags = sorted(r["metadata"]["question"].split("]")[0].strip("[") for r in kept.values())
    assert tags == ["P1-factual", "P1-unanswerable", "P2-factual"]
    example = next(r for r in kept.values() if "P1-factual" in r["metadata"]["question"])
    system, user, assistant = example["messages"]
    assert system["role"] == "system" and "ONLY the context" in system["content"]
    assert (
        user["role"] == "user"
        and "34 metres" in user["content"]
        and "[P1-factual]" in user["content"]
    )
    assert assistant == {"role": "assistant", "content": "It stands 34 metres tall."}
    assert example["response"] == "It stands 34 metres tall."
    meta = example["metadata"]
    assert meta["adherence"] == 1.0 and meta["question_kind"] == "factual"
    assert meta["source"].startswith("a_lighthouse.md")
    assert meta["source_id"] == "a_lighthouse.md"  # the document it came from
    assert meta["provenance"]["answer"]["template"] == "rag_qa/answer"
    assert len(meta["judge"]["votes"]) == 3
    unanswerable = next(
        r for r in kept.values() if r["metadata"]["question_kind"] == "unanswerable"
    )
    assert unanswerable["response"].startswith("The context does not say")
    assert unanswerable["metadata"]["abstained"] is True
    p2 = next(r for r in kept.values() if "P2-factual" in r["metadata"]["question"])
    assert p2["metadata"]["adherence"] == 1.0  # the unreadable vote does not count
    assert [v["supported"] for v in p2["metadata"]["judge"]["votes"]].count(None) == 1

    rejected = read_jsonl(out / "rejected.jsonl")
    reasons = {
        (r["stage"], r["record"].get("question", "").split("]")[0].strip("[")): r for r in rejected
    }
    assert set(reasons) == {
        ("questions", "P2-factual"),
        ("answers", "P2-multi_hop"),
        ("answers", "P2-unanswerable"),
        ("adherence", "P1-numeric"),
        ("filter", "P1-multi_hop"),
    }  # fmt: skip
    assert "duplicate question" in reasons[("questions", "P2-factual")]["reason"]
    assert "declined a multi_hop" in reasons[("answers", "P2-multi_hop")]["reason"]
    assert "unanswerable question answered" in reasons[("answers", "P2-unanswerable")]["reason"]
    malformed = reasons[("adherence", "P1-numeric")]
    assert "no readable judge vote" in malformed["reason"]
    assert malformed["detail"]["raw"]  # the judge's raw text is kept
    dropped = reasons[("filter", "P1-multi_hop")]
    assert dropped["reason"].startswith("adherence 0.33 < 0.67")
    assert "Agnes Holm" in dropped["reason"]  # the majority's (no) explanation
    assert dropped["detail"]["adherence"] == pytest.approx(0.3333, abs=1e-3)

    funnel = json.loads((out / "funnel.json").read_text())
    stages = {s["stage"]: (s["n_in"], s["n_out"], s["n_rejected"]) for s in funnel["stages"]}
    assert stages == {
        "passages": (2, 2, 0),
        "questions": (8, 7, 1),
        "answers": (7, 5, 2),
        "adherence": (5, 4, 1),
        "filter": (4, 3, 1),
    }
    assert funnel["kept"] == 3 and funnel["kept_by_kind"] == {"factual": 2, "unanswerable": 1}
    gates = {g["suite"]: g["success"] for g in funnel["gates"]}
    assert gates == {
        "rag_qa.questions": True,
        "rag_qa.answers": True,
        "rag_qa.scored": True,
        "rag_qa.kept": True,
    }
    return funnel


@pytest.fixture
def server():
    with LLMTestServer(script()) as s:
        yield s


@pytest.mark.slow
def test_every_path_ends_where_it_should(tmp_path, server, prefect_harness) -> None:
    from flows.rag_qa import rag_qa

    p = params(tmp_path, server.base_url)
    summary = rag_qa(p)
    funnel = check_outcome(Path(p.out))
    assert summary["kept"] == 3
    # 8 questions + 7 answers + 5 × 3 judge votes, each sent once
    assert funnel["llm_calls"] == 8 + 7 + 15
    assert server.stats.chat_requests == 8 + 7 + 15  # J votes differ by seed only

    before = server.stats.chat_requests
    again = rag_qa(p)
    assert server.stats.chat_requests == before  # every stage reused
    assert again["llm_calls_from_journal"] == again["llm_calls"]


@pytest.mark.slow
def test_adherence_read_from_probabilities_sends_no_judge_vote(
    tmp_path, server, prefect_harness
) -> None:
    """adherence_method=probability on an OpenAI-compatible judge: each answer's claims are
    scored through /v1/completions (echoed log-probabilities), no chat vote is sent, every
    scored row records its claims, and a re-run reads them from the journal."""
    from flows.rag_qa import rag_qa

    p = params(tmp_path, server.base_url, adherence_method="probability")
    summary = rag_qa(p)
    assert server.stats.chat_requests == 8 + 7  # questions and answers only
    assert server.app.score_requests > 0
    funnel = json.loads((Path(p.out) / "funnel.json").read_text())
    stages = {s["stage"]: s for s in funnel["stages"]}
    assert stages["adherence"]["n_in"] == 5
    assert funnel["threshold"] == p.probability_threshold
    kept = read_jsonl(Path(p.out) / "dataset.jsonl")
    assert len(kept) == summary["kept"]
    for example in kept:
        judge = example["metadata"]["judge"]
        assert judge["method"] == "probability" and judge["votes"] == []
        assert judge["claims"] and all(0 <= c["p_supported"] <= 1 for c in judge["claims"])
        assert example["metadata"]["adherence"] >= p.probability_threshold
    scores = server.app.score_requests
    rag_qa(p)
    assert server.app.score_requests == scores and server.stats.chat_requests == 8 + 7


@pytest.mark.slow
def test_batch_mode_through_both_batch_apis(tmp_path, monkeypatch, prefect_harness) -> None:
    """Generator on the OpenAI Batch API, judge on Anthropic Message Batches; one
    question request fails and one judge vote expires in the first batch and are
    resubmitted alone. The outcome equals the live run's."""
    from flows.rag_qa import rag_qa

    monkeypatch.setenv("OPENAI_API_KEY", "k")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    gen_behaviour = BatchBehaviour(polls_before_done=2, fail_pattern=r"\[P1\].*Write one numeric")
    # the 3 votes carry the same messages (they differ by seed): the double counts 3
    judge_behaviour = BatchBehaviour(expire_pattern=JUDGE + r"\[P2-factual\]", expire_times=3)
    with (
        OpenAIBatchServer(script(), gen_behaviour) as gen,
        AnthropicBatchServer(script(), judge_behaviour) as judge,
    ):
        p = params(
            tmp_path,
            gen.base_url,
            provider="openai",
            judge_provider="anthropic",
            judge_model="claude-haiku-4-5",
            judge_base_url=judge.base_url,
            batch=True,
            batch_poll_s=0.05,
        )
        rag_qa(p)
        check_outcome(Path(p.out))
        # questions: 3 shards of ≤3 passages → 1 shard here + a resubmission; answers: 1
        assert gen.batch.batch_stats.batches_created == 3
        assert judge.batch.batch_stats.batches_created == 2  # + the expired votes
        assert gen.stats.chat_requests == 0 and judge.stats.chat_requests == 0  # no live call
        journal = Journal()
        entries = journal._all()
        journal.close()
        assert len(entries) == 8 + 7 + 15  # a failed request is not journaled
        assert all(e.batch for e in entries)
        rag_qa(p)  # a re-run: nothing submitted again
        assert gen.batch.batch_stats.batches_created == 3
        assert judge.batch.batch_stats.batches_created == 2


@pytest.mark.slow
def test_a_flow_stopped_while_its_batch_runs_resumes_the_same_batch(
    tmp_path, monkeypatch, prefect_harness
) -> None:
    from flows.rag_qa import rag_qa
    from tasks.llm.batch.jobs import BatchTimeout

    monkeypatch.setenv("OPENAI_API_KEY", "k")
    with OpenAIBatchServer(script(), BatchBehaviour(hold=True)) as gen:
        p = params(
            tmp_path, gen.base_url, provider="openai", batch=True, batch_poll_s=0.02,
            batch_max_wait_h=0.1 / 3600,
        )  # fmt: skip
        with pytest.raises(BatchTimeout):
            rag_qa(p)
        assert gen.batch.batch_stats.batches_created == 1  # retries resumed it too
        gen.batch.release()
        rag_qa(p.model_copy(update={"batch_max_wait_h": 1.0}))
        check_outcome(Path(p.out))
        # questions (1, resumed) + answers (1) + judge (1)
        assert gen.batch.batch_stats.batches_created == 3


@pytest.mark.slow
def test_an_unbalanced_question_mix_stops_the_run(tmp_path, prefect_harness) -> None:
    """Half the questions should be unanswerable; every unanswerable request comes back
    malformed, so only factual questions remain and the mix gate stops the run before
    any answer is paid for."""
    from flows.rag_qa import rag_qa

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(10):
        (folder / f"d{i}.txt").write_text(f"[D{i}] " + P2)
    rules = [
        Rule(pattern=r"Write one unanswerable", replies=["not json at all"]),
        Rule(pattern=r"Write one factual", replies=[question("F")]),
    ]
    with LLMTestServer(Script(rules=rules)) as server:
        p = params(
            tmp_path, server.base_url, documents=str(folder),
            question_mix={"factual": 1, "unanswerable": 1},
        )  # fmt: skip
        with pytest.raises(GateFailed) as info:
            rag_qa(p)
        assert info.value.result.suite == "rag_qa.questions"
        assert any("not_be_in_set" in f["expectation"] for f in info.value.result.failures)
        # 20 factual questions, 20 unanswerable ones asked 3 times (2 re-asks): no answer
        assert server.stats.chat_requests == 20 + 20 * 3
        assert not (Path(p.out) / "dataset.jsonl").exists()


def test_params_refuse_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown question kind"):
        RAGQAParams(question_mix={"trivia": 1.0})
