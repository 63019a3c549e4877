"""The grounding check by code that runs before the adherence judge is paid."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tasks.recipes.rag_qa.grounding import check_grounding
from winnow.testing.llm_server import LLMTestServer, Rule, Script

CONTEXT = (
    "The Pellworth bridge opened in 1977 after five years of work. Its main span is 1,020 "
    "metres long. A toll was charged until 1994, when the county paid off the loans."
)


@pytest.mark.parametrize(
    ("answer", "grounded"),
    [
        ("Its main span is 1,020 metres long.", True),  # stated; 1,020 read as 1020
        ("The toll was charged until 1994.", True),
        ("Work on the bridge took five years, from 1972.", True),  # 1972 = 1977 - 5
        ("The toll lasted 17 years, from 1977 to 1994.", True),  # 1994 - 1977
        ("The toll was removed in 1996.", False),  # a number from outside
        ("Its main span is 1,200 metres long.", False),
        ("It was removed after public protests against the charge.", False),  # new words
        ("The context does not say who designed it.", True),  # an abstention: the judge decides
    ],
)
def test_grounding_finds_what_comes_from_outside_the_context(answer: str, grounded: bool) -> None:
    g = check_grounding(CONTEXT, "What about the bridge?", answer)
    assert g.grounded is grounded, g.reason()


def test_grounding_names_what_it_did_not_find() -> None:
    g = check_grounding(CONTEXT, "When was the toll removed?", "It was removed in 1996 by vote.")
    assert not g.grounded
    assert g.missing_numbers == ["1996"]
    assert "vote" in g.missing_words
    assert "1996" in g.reason()


def test_question_words_count_as_known() -> None:
    g = check_grounding("It opened in 1977.", "When did the Pellworth bridge open?",
                        "The Pellworth bridge opened in 1977.")  # fmt: skip
    assert g.grounded and g.share == 1.0


def test_min_share_is_the_bar_for_words() -> None:
    answer = "The main span, elegant and slender, is 1,020 metres."
    assert not check_grounding(CONTEXT, "How long?", answer, min_share=0.9).grounded
    assert check_grounding(CONTEXT, "How long?", answer, min_share=0.5).grounded


def test_adherence_command_scores_an_ungrounded_answer_0_without_asking_a_judge(
    project_dir,
) -> None:
    from winnow.cli import app

    yes = json.dumps({"reasoning": "stated", "supported": "yes"})
    rows = [
        {"id": "ok", "context": CONTEXT, "question": "How long is the main span?",
         "answer": "The main span is 1,020 metres long."},
        {"id": "out", "context": CONTEXT, "question": "When was the toll removed?",
         "answer": "The toll was removed in 1996."},
    ]  # fmt: skip
    with LLMTestServer(Script(rules=[Rule(pattern="ANSWER", replies=[yes])])) as server:
        result = CliRunner().invoke(
            app,
            ["adherence", "--provider", "openai-compatible", "--model", "test-model",
             "--base-url", server.base_url, "--judges", "3"],
            input="\n".join(json.dumps(r) for r in rows) + "\n",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert server.stats.chat_requests == 3  # J votes for the grounded row only
    out = {r["id"]: r for r in map(json.loads, result.stdout.splitlines()) if r}
    assert out["ok"]["adherence"] == 1.0 and out["ok"]["supported"] is True
    assert out["out"]["adherence"] == 0.0 and out["out"]["supported"] is False
    assert "1996" in out["out"]["adherence_explanation"]
