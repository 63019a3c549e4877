"""Instruction-following difficulty: the scorer (an OpenAI-compatible completions endpoint,
here the test server's copy model, a named test double; the embedded model for real in the
slow test), the journal in front of it, the `ifd` selection, `winnow curate ifd`, and the
step as a sharded stage of a real run."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from tasks.curation.ifd import IFDConfig, ifd_score_batch, ifd_select, prefixes
from tasks.llm.base import ProviderSpec
from tasks.llm.journal import Journal
from tasks.llm.scoring import CompletionsScorer, JournaledScorer, Unscorable, scorer_for
from tasks.pipeline.stage import RunInfo, StageContext
from winnow.cli import app
from winnow.testing.llm_server import TOY_NEW, TOY_SEEN

runner = CliRunner()


def chat(i: str, question: str, answer: str) -> dict:
    return {
        "id": i,
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ],
    }


# Under the copy model, an answer made of the question's words is likely after the
# question (IFD < 1); one sharing no word with it is not helped (IFD = 1).
HELPED = chat("helped", "sort the numbers please", "sort numbers")
HALF = chat("half", "reverse the string please", "reverse everything")
UNHELPED = chat("unhelped", "add two integers", "bananas grow tall")


def spec_for(server) -> ProviderSpec:
    return ProviderSpec(kind="openai-compatible", model="test-model", base_url=server.base_url)


def ctx() -> StageContext:
    return StageContext(run=RunInfo(run_id="t", recipe="t"), stage="ifd")


def test_completions_scorer_returns_only_the_continuations_tokens(llm_server):
    scorer = CompletionsScorer(spec_for(llm_server))
    values = scorer.score("say hello", " hello world")
    # " hello" occurs in the prefix, " world" does not; the generated token is left out
    assert values == pytest.approx([TOY_SEEN, TOY_NEW])
    # a token straddling the boundary (the double's tokens carry their leading space)
    assert scorer.score("say hello ", "hello world") == pytest.approx([TOY_SEEN, TOY_NEW])


def test_journaled_scores_are_not_asked_twice(llm_server, tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    scorer = JournaledScorer(CompletionsScorer(spec_for(llm_server)), journal, concurrency=4)
    pairs = [("a b ", "a c"), ("x ", "y"), ("a b ", "a c")]
    first = scorer.score_many(pairs)
    assert llm_server.app.score_requests == 2  # the duplicate pair is sent once
    assert [s.logprobs for s in first][0] == pytest.approx([TOY_SEEN, TOY_NEW])
    assert not first[0].result.cached and first[2].result.cached
    entry = journal.get(first[0].result.key)
    assert entry is not None and entry.template == "score" and entry.logprob_tokens == 2
    again = JournaledScorer(CompletionsScorer(spec_for(llm_server)), journal).score_many(pairs)
    assert llm_server.app.score_requests == 2
    assert all(s.result.cached for s in again)
    assert [s.logprobs for s in again] == [s.logprobs for s in first]


def test_ifd_scores_and_selects_by_range_and_top_fraction(llm_server):
    config = IFDConfig(scorer=spec_for(llm_server), prompt_format="plain")
    scored = ifd_score_batch([HELPED, HALF, UNHELPED], config, ctx())
    assert not scored.rejected and len(scored.calls) == 6
    ifd = {r["id"]: r["metadata"]["ifd"] for r in scored.kept}
    # answer alone: every word new; after the question: its words are seen
    helped = math.exp(-TOY_SEEN) / math.exp(-TOY_NEW)
    half = math.exp(-(TOY_SEEN + TOY_NEW) / 2) / math.exp(-TOY_NEW)
    assert ifd["helped"] == pytest.approx(helped, rel=1e-5)
    assert ifd["half"] == pytest.approx(half, rel=1e-5)
    assert ifd["unhelped"] == pytest.approx(1.0)
    assert scored.kept[0]["metadata"]["ifd_ppl"]["direct"] == pytest.approx(math.exp(-TOY_NEW))

    kept = [r["id"] for k, r in ifd_select(iter(scored.kept), config, ctx()) if k == "kept"]
    assert kept == ["helped", "half"]  # IFD >= 1 teaches nothing
    top = config.model_copy(update={"top_fraction": 0.5})
    out = list(ifd_select(iter(scored.kept), top, ctx()))
    assert [r["id"] for k, r in out if k == "kept"] == ["half"]  # the most difficult first
    reasons = {r["record_id"]: r["reason"] for k, r in out if k == "rejected"}
    assert "below the top 50%" in reasons["helped"]
    assert "does not help" in reasons["unhelped"]


def test_a_row_without_an_answer_is_rejected_not_scored(llm_server):
    config = IFDConfig(scorer=spec_for(llm_server))
    bad = {"id": "q", "messages": [{"role": "user", "content": "hi"}]}
    out = ifd_score_batch([bad], config, ctx())
    assert not out.kept and "not scorable" in out.rejected[0]["reason"]
    assert llm_server.app.score_requests == 0


def test_failed_scores_leave_an_error_call_so_the_shard_is_asked_again(llm_server):
    # the double serves only "test-model": another model is a 404 for every score
    spec = ProviderSpec(
        kind="openai-compatible", model="missing", base_url=llm_server.base_url, max_retries=0
    )
    out = ifd_score_batch([HELPED], IFDConfig(scorer=spec), ctx())
    assert not out.kept and "scoring failed" in out.rejected[0]["reason"]
    assert any(c["error"] for c in out.calls)


def test_chatml_prefixes_put_the_turns_before_the_assistant_header():
    with_q, alone = prefixes([{"role": "user", "content": "Q?"}], "chatml")
    assert with_q == "<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n"
    assert alone == "<|im_start|>assistant\n"


def test_cli_curate_ifd_reads_chat_rows_and_writes_metadata(llm_server, tmp_path):
    rejected = tmp_path / "rejected.jsonl"
    rows = [HELPED, HALF, UNHELPED]
    result = runner.invoke(
        app,
        ["curate", "ifd", "--provider", "openai-compatible", "--model", "test-model",
         "--base-url", llm_server.base_url, "--rejected", str(rejected)],
        input="".join(json.dumps(r) + "\n" for r in rows),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    kept = [json.loads(x) for x in result.stdout.splitlines() if x.strip()]
    rej = [json.loads(x) for x in rejected.read_text().splitlines()]
    assert [r["id"] for r in kept] == ["helped", "half"]
    assert all(0 < r["metadata"]["ifd"] < 1 for r in kept)
    assert [r["id"] for r in rej] == ["unhelped"]
    assert rej[0]["record"]["metadata"]["ifd"] == pytest.approx(1.0)
    assert "ifd: 3 in, 2 kept, 1 rejected" in result.stderr

    sent = llm_server.app.score_requests
    again = runner.invoke(
        app,
        ["curate", "ifd", "--provider", "openai-compatible", "--model", "test-model",
         "--base-url", llm_server.base_url, "--threshold", "0.5"],
        input="".join(json.dumps(r) + "\n" for r in rows),
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    assert [json.loads(x)["id"] for x in again.stdout.splitlines()] == ["half"]
    assert llm_server.app.score_requests == sent  # every score came from the journal


def test_cli_ifd_with_a_missing_scorer_model_file_fails_cleanly(tmp_path, monkeypatch):
    monkeypatch.setenv("WINNOW_MODEL_PATH", str(tmp_path / "absent.gguf"))
    result = runner.invoke(app, ["curate", "ifd"], input=json.dumps(HELPED) + "\n")
    assert result.exit_code == 2
    assert "ifd" in result.output


@pytest.mark.slow
def test_embedded_scorer_helped_answer_scores_below_a_mismatched_one(model_path, monkeypatch):
    monkeypatch.setenv("WINNOW_MODEL_PATH", str(model_path))
    question = "What is the capital of France? Answer in one word."
    rows = [chat("right", question, "Paris"), chat("wrong", "Name a fruit.", "Paris")]
    out = ifd_score_batch(rows, IFDConfig(), ctx())
    ifd = {r["id"]: r["metadata"]["ifd"] for r in out.kept}
    assert ifd["right"] < 1.0 and ifd["right"] < ifd["wrong"]
    # the shared scorer reuses the process's model: a second call is a journal hit
    again = ifd_score_batch(rows, IFDConfig(), ctx())
    assert all(c["cached"] for c in again.calls)
    assert scorer_for(ProviderSpec()) is scorer_for(ProviderSpec())


def test_recipe_parameters_turn_ifd_on_as_sharded_stages_of_a_run(llm_server):
    from pydantic import BaseModel

    from tasks.curation.optional import CurationParams, curate, plan_curation
    from tasks.pipeline.run import Run
    from tasks.pipeline.runner import write_input_shards

    class Params(BaseModel):
        shard_size: int = 2

    off = plan_curation(CurationParams(), ["problem", "solution"], "problem", None)
    assert off.ifd is None
    plan = plan_curation(CurationParams(ifd_max=1.0), ["problem", "solution"], "problem", None)
    assert plan.ifd is not None and plan.ifd.instruction_field == "problem"
    # the recipe's scorer is the embedded model; here the test server stands in for it
    plan.ifd.scorer = spec_for(llm_server)
    rows = [
        {"id": c["id"], "problem": c["messages"][0]["content"],
         "solution": c["messages"][1]["content"]}
        for c in (HELPED, HALF, UNHELPED)
    ]  # fmt: skip
    run = Run("ifd-test", Params())
    seeds = write_input_shards(rows, 2, "ifd-test")
    upstream = SimpleNamespace(kept=seeds)  # what curate reads of the recipe's last output
    final = curate(run, upstream, plan)  # type: ignore[arg-type]
    run.finish("completed")
    assert sorted(r["id"] for r in final.kept_rows()) == ["half", "helped"]
    funnel = [(f["stage"], f["n_in"], f["n_out"]) for f in run.catalog.funnel(run.run_id)]
    assert funnel == [("ifd_score", 3, 3), ("ifd_select", 3, 2)]
    [why] = [r["reason"] for r in run.catalog.rejections(run.run_id)]
    assert "does not help" in why


class TooLongScorer:
    """Test double of a scorer whose model context is 20 characters: longer texts can
    never be scored. Not a model."""

    name, model = "double", "short-context"

    def score(self, prefix: str, continuation: str) -> list[float]:
        if len(prefix + continuation) > 20:
            raise Unscorable("does not fit the context")
        return [-1.0] * len(continuation.split())

    def choose(self, prefix: str, options: list[str]) -> list[float]:
        raise NotImplementedError


def test_a_text_too_long_to_score_is_rejected_without_leaving_the_shard_incomplete(
    monkeypatch, tmp_path
):
    from tasks.curation import ifd

    journaled = JournaledScorer(TooLongScorer(), Journal(tmp_path / "j.sqlite"))
    monkeypatch.setattr(ifd, "scorer_for", lambda spec: journaled)
    long = chat("long", "explain " * 10, "a long answer " * 5)
    out = ifd_score_batch([long], IFDConfig(prompt_format="plain"), ctx())
    assert "ifd: not scorable: does not fit" in out.rejected[0]["reason"]
    assert out.calls and not any(c["error"] for c in out.calls)
