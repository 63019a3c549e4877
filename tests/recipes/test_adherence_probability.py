"""Adherence read from probabilities: claims split from the answer, P(yes) against P(no)
read per claim, the weakest claim's score, the number veto, threshold calibration, and
`winnow adherence --method probability` end to end against the test server (a named test
double whose "model" copies words: it says nothing true about adherence, only carries the
plumbing). The embedded model is exercised for real in the slow test."""

from __future__ import annotations

import json
import math
import re

import pytest
from typer.testing import CliRunner

from tasks.llm.base import ProviderSpec
from tasks.llm.journal import Journal
from tasks.llm.scoring import JournaledScorer
from tasks.recipes.rag_qa import probability
from tasks.recipes.rag_qa.probability import (
    ProbabilityConfig,
    calibrate_threshold,
    p_supported,
    score_rows_by_probability,
    split_claims,
)
from winnow.cli import app

CONTEXT = "The bridge opened in 1932. It is 503 metres long and carries a railway."


class WordOverlapScorer:
    """Test double of a scorer: says "yes" (log 0.9 against 0.1) when every word of the
    claim is in the document, "no" otherwise. Not a model."""

    name = "double"
    model = "word-overlap"

    def __init__(self) -> None:
        self.calls = 0

    def score(self, prefix: str, continuation: str) -> list[float]:
        raise NotImplementedError

    def choose(self, prefix: str, options: list[str]) -> list[float]:
        self.calls += 1
        document = re.search(r"Document: (.*?)\n\nQuestion", prefix, re.S).group(1).lower()
        if "Does the document contain the answer" in prefix:  # an abstention's question
            question = re.search(r"Question: (.*?)\n\n", prefix, re.S).group(1).lower()
            claim = re.findall(r"[a-z0-9]+", question)[-1]  # its last word: what is asked
        else:
            claim = re.search(r"Claim: (.*?)\n\nIs the claim", prefix, re.S).group(1).lower()
        words = re.findall(r"[a-z0-9]+", claim)
        yes = all(w in re.findall(r"[a-z0-9]+", document) for w in words)
        p_yes = 0.9 if yes else 0.1
        return [math.log(p_yes / 2)] * 2 + [math.log((1 - p_yes) / 2)] * 2


@pytest.fixture
def double(monkeypatch, tmp_path):
    scorer = WordOverlapScorer()
    journaled = JournaledScorer(scorer, Journal(tmp_path / "j.sqlite"))
    monkeypatch.setattr(probability, "scorer_for", lambda spec: journaled)
    return scorer


def row(answer: str) -> dict:
    return {"context": CONTEXT, "question": "Tell me about the bridge.", "answer": answer}


def test_split_claims_by_sentence_and_cap():
    assert split_claims("It opened in 1932. It is long!  Really?") == [
        "It opened in 1932.",
        "It is long!",
        "Really?",
    ]
    assert split_claims("a. B. C. D.", max_claims=2) == ["a.", "B. C. D."]
    assert split_claims("just a phrase") == ["just a phrase"]


def test_p_supported_normalises_yes_against_no():
    half = [math.log(0.25)] * 4
    assert p_supported(half) == pytest.approx(0.5)
    assert p_supported([math.log(0.6), math.log(0.2), math.log(0.1), math.log(0.1)]) == (
        pytest.approx(0.8)
    )


def test_the_answer_scores_its_weakest_claim_and_numbers_veto(double):
    supported = row("The bridge opened in 1932. It carries a railway.")
    one_bad = row("The bridge opened in 1932. It carries cars.")
    invented = row("The bridge opened in 1932 and cost 7 million.")
    [(good, good_calls), (bad, _), (veto, veto_calls)] = score_rows_by_probability(
        [supported, one_bad, invented], ProbabilityConfig()
    )
    assert good.score == pytest.approx(0.9) and len(good.claims) == 2
    assert len(good_calls) == 2 and all(c.provider == "double" for c in good_calls)
    assert bad.score == pytest.approx(0.1)
    assert "cars" in bad.explanation
    assert veto.score == 0.0 and "7" in veto.explanation and veto_calls == []
    assert double.calls == 3  # a claim two answers share is read once; the veto costs none

    # journaled: scoring again asks nothing
    again = score_rows_by_probability([supported, one_bad], ProbabilityConfig())
    assert double.calls == 3 and all(c.cached for _, calls in again for c in calls)


def test_an_abstention_is_supported_when_the_document_does_not_answer(double):
    """ "The context does not say" is right for a question the document leaves open, and
    wrong for one it answers: its score is P(no) to "does the document answer?"."""
    abstain = "The context does not say."
    [(open_, calls), (answered, _)] = score_rows_by_probability(
        [
            {"context": CONTEXT, "question": "Who painted it green?", "answer": abstain},
            {"context": CONTEXT, "question": "What does it carry? a railway", "answer": abstain},
        ],
        ProbabilityConfig(),
    )
    assert open_.score == pytest.approx(0.9) and len(calls) == 1
    assert answered.score == pytest.approx(0.1)
    assert open_.claims[0]["claim"] == abstain


def test_auto_reads_probabilities_on_the_embedded_model_only():
    assert probability.resolve_method("auto", "local") == "probability"
    for provider in ("openai", "anthropic", "openai-compatible"):
        assert probability.resolve_method("auto", provider) == "votes"
    assert probability.resolve_method("probability", "openai-compatible") == "probability"
    assert probability.resolve_method("votes", "local") == "votes"
    with pytest.raises(ValueError, match="log-probabilities"):
        probability.resolve_method("probability", "anthropic")


def test_the_recipe_plans_its_adherence_by_method(monkeypatch):
    """The recipe's plan: probability → a ProbabilityConfig and the calibrated threshold;
    votes → ChainPoll and its own; probability on a provider without logprobs → refused
    before any request."""
    from tasks.llm.base import ConfigError
    from tasks.recipes.rag_qa import recipe
    from tasks.recipes.rag_qa.adherence import ChainPollConfig
    from tasks.recipes.rag_qa.recipe import RAGQAParams

    monkeypatch.setattr(RAGQAParams, "check_providers", lambda self, judge=True: None)
    monkeypatch.setattr(recipe, "check_suites", lambda suites: None)
    base = dict(topics=["bridges"], provider="openai-compatible", model="m", base_url="http://x")
    by_prob = recipe.plan(RAGQAParams(**base, adherence_method="probability"))
    assert isinstance(by_prob.adherence, ProbabilityConfig)
    assert by_prob.adherence.scorer.kind == "openai-compatible"
    assert by_prob.filter.threshold == probability.CALIBRATED_THRESHOLD
    by_votes = recipe.plan(RAGQAParams(**base))  # auto, not the embedded model
    assert isinstance(by_votes.adherence, ChainPollConfig) and by_votes.filter.threshold == 0.67
    with pytest.raises(ConfigError, match="adherence_method"):
        recipe.plan(RAGQAParams(topics=["b"], provider="anthropic", adherence_method="probability"))


def test_cli_refuses_probability_without_logprobs():
    result = CliRunner().invoke(
        app,
        ["adherence", "--method", "probability", "--provider", "anthropic"],
        input=json.dumps({"id": "a", **row("x")}) + "\n",
    )
    assert result.exit_code != 0 and "log-probabilities" in result.output


def test_calibrated_threshold_separates_labelled_scores():
    scores = [0.9, 0.8, 0.75, 0.3, 0.2, 0.6]
    labels = [True, True, True, False, False, False]
    t = calibrate_threshold(scores, labels)
    assert 0.6 < t <= 0.75
    assert sum((s >= t) == y for s, y in zip(scores, labels, strict=True)) == 6


def test_cli_probability_method_with_calibration(llm_server, tmp_path):
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text(
        json.dumps({**row("It carries a railway."), "supported": True})
        + "\n"
        + json.dumps({**row("It was painted green in 1990."), "supported": False})
        + "\n"
    )
    rows = [{"id": "a", **row("The bridge is 503 metres long.")}, {"id": "b", **row("It cost 9.")}]
    result = CliRunner().invoke(
        app,
        ["adherence", "--method", "probability", "--provider", "openai-compatible",
         "--model", "test-model", "--base-url", llm_server.base_url,
         "--calibrate", str(labelled)],
        input="".join(json.dumps(r) + "\n" for r in rows),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = [json.loads(x) for x in result.stdout.splitlines() if x.strip()]
    assert [r["id"] for r in out] == ["a", "b"]
    assert 0.0 < out[0]["adherence"] <= 1.0 and out[0]["adherence_claims"]
    assert out[1]["adherence"] == 0.0 and not out[1]["supported"]  # 9 is not in the context
    assert "calibrated on 2 labelled rows" in result.stderr
    assert llm_server.app.score_requests > 0


@pytest.mark.slow
def test_embedded_model_gives_the_supported_answer_the_higher_probability(model_path, monkeypatch):
    monkeypatch.setenv("WINNOW_MODEL_PATH", str(model_path))
    rows = [row("The bridge carries a railway."), row("The bridge carries only bicycles.")]
    [(good, _), (bad, _)] = score_rows_by_probability(
        rows, ProbabilityConfig(scorer=ProviderSpec())
    )
    assert good.score is not None and bad.score is not None
    assert good.score > bad.score
