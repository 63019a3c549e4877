"""The RAG QA parts on their own: chunking, the question mix and its gate, ChainPoll
votes, abstention detection, and `winnow adherence` against the scripted server."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from tasks.gates import gx
from tasks.recipes.rag_qa.adherence import aggregate, parse_vote
from tasks.recipes.rag_qa.inputs import (
    ChunkConfig,
    DocumentError,
    chunk_text,
    document_passages,
    example_documents,
    topic_rows,
)
from tasks.recipes.rag_qa.kinds import DEFAULT_MIX, check_mix, kind_for, schedule
from tasks.recipes.rag_qa.recipe import mix_suite
from tasks.recipes.rag_qa.stages import abstains
from winnow.testing.llm_server import LLMTestServer, Rule, Script

# --- contexts -------------------------------------------------------------------------------


def test_chunks_are_whole_sentences_within_size_with_overlap() -> None:
    sentences = [f"Sentence number {i} has exactly seven words." for i in range(40)]
    chunks = chunk_text(" ".join(sentences), ChunkConfig(size=50, overlap=14, min_words=5))
    assert len(chunks) > 4
    for chunk in chunks:
        assert len(chunk.split()) <= 50
        assert chunk.startswith("Sentence number") and chunk.endswith("words.")
    for a, b in zip(chunks, chunks[1:], strict=False):
        carried = " ".join(b.split()[:14])
        assert carried in a  # the next passage starts with the previous one's tail
    text = " ".join(chunks)
    assert all(s in text for s in sentences)  # nothing lost


def test_a_sentence_longer_than_a_passage_is_cut_by_words() -> None:
    long = " ".join(f"w{i}" for i in range(120)) + "."
    chunks = chunk_text(long, ChunkConfig(size=50, overlap=10, min_words=5))
    assert all(len(c.split()) <= 50 for c in chunks)
    assert chunks[0].split()[0] == "w0" and "w119." in chunks[-1]


def test_markdown_headings_are_dropped_and_passages_are_deduplicated(tmp_path: Path) -> None:
    text = "# Title\n\n" + "The tower is tall and white and old. " * 10
    (tmp_path / "a.md").write_text(text)
    (tmp_path / "b.txt").write_text(text)  # the same text again
    rows = document_passages(tmp_path, ChunkConfig(size=200, overlap=0, min_words=5))
    assert len(rows) == 1
    assert "Title" not in rows[0]["passage"] and rows[0]["source"] == "a.md#0"
    assert rows[0]["index"] == 0 and rows[0]["id"].startswith("c-")


def test_jsonl_documents_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps({"source": "s1", "text": "One two three four five six."}) + "\n")
    rows = document_passages(path, ChunkConfig(size=50, overlap=0, min_words=3))
    assert rows[0]["source"] == "s1#0"
    path.write_text('{"body": "no text field"}\n')
    with pytest.raises(DocumentError, match="'text'"):
        document_passages(path, ChunkConfig())
    with pytest.raises(DocumentError, match="not found"):
        document_passages(tmp_path / "missing", ChunkConfig())


def test_documents_from_parquet_csv_and_a_saved_dataset(tmp_path: Path) -> None:
    """Any table works, with the text in the field named; a passage names the row it came
    from (its id, else file and row number) in ``source_id``."""
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"id": "doc-1", "body": "Alpha beta gamma delta epsilon zeta."},
        {"id": "", "body": "Eta theta iota kappa lambda mu nu."},
    ]
    config = ChunkConfig(size=50, overlap=0, min_words=3)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "docs.parquet")
    with (tmp_path / "docs.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "body"])
        writer.writeheader()
        writer.writerows(rows)
    for name in ("docs.parquet", "docs.csv"):
        passages = document_passages(tmp_path / name, config, field="body")
        assert [p["source_id"] for p in passages] == ["doc-1", f"{name}:2"]
        assert passages[1]["passage"] == rows[1]["body"]
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    passages = document_passages(tmp_path / "saved", config, field="body")
    assert [p["source_id"] for p in passages] == ["doc-1", "saved:2"]
    with pytest.raises(DocumentError, match="expected a text field 'text'"):
        document_passages(tmp_path / "docs.parquet", config)


def test_shipped_examples_give_passages() -> None:
    rows = document_passages(example_documents(), ChunkConfig())
    assert len(rows) >= 3
    assert {r["source"].split("#")[0] for r in rows} >= {"lighthouses.md", "sourdough.txt"}


def test_topic_rows_vary_repeated_topics() -> None:
    rows = topic_rows(["a", "b"], 5)
    assert [(r["topic"], r["variant"]) for r in rows] == [
        ("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2),
    ]  # fmt: skip


# --- the mix --------------------------------------------------------------------------------


def test_the_schedule_follows_the_mix_over_any_prefix() -> None:
    plan = schedule(DEFAULT_MIX)
    assert Counter(plan) == {"factual": 30, "multi_hop": 25, "numeric": 20, "unanswerable": 25}
    for n in (8, 20, 40):
        counts = Counter(plan[:n])
        for kind, share in DEFAULT_MIX.items():
            assert abs(counts[kind] - share * n) <= 1.0
    assert kind_for(DEFAULT_MIX, 3) == plan[3] and kind_for(DEFAULT_MIX, 103) == plan[3]


def test_a_mix_must_name_known_kinds() -> None:
    with pytest.raises(ValueError, match="unknown question kind"):
        check_mix({"trivia": 1})
    with pytest.raises(ValueError, match="positive"):
        check_mix({"factual": 0})
    assert check_mix({"factual": 2, "numeric": 2}) == {"factual": 0.5, "numeric": 0.5}


def _frame(kinds: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [f"q{i}" for i in range(len(kinds))],
            "passage": ["p"] * len(kinds),
            "question": ["What is it about?"] * len(kinds),
            "kind": kinds,
        }
    )


def test_the_mix_gate_passes_a_balanced_set_and_stops_an_unbalanced_one() -> None:
    mix = check_mix({"factual": 1, "unanswerable": 1})
    balanced = _frame(["factual", "unanswerable"] * 30)
    assert gx.validate(balanced, mix_suite("rag_qa.questions", mix, 60, 0.15)).success
    skewed = _frame(["factual"] * 50 + ["unanswerable"] * 10)
    result = gx.validate(skewed, mix_suite("rag_qa.questions", mix, 60, 0.15))
    assert not result.success and result.severity == "critical"
    failed = {(f["expectation"], tuple(f["kwargs"]["value_set"])) for f in result.failures}
    assert failed == {
        ("expect_column_values_to_be_in_set", ("unanswerable",)),  # too few
        ("expect_column_values_to_not_be_in_set", ("factual",)),  # too many
    }
    stray = _frame(["factual", "unanswerable", "numeric"] * 20)  # a kind not asked for
    assert not gx.validate(stray, mix_suite("rag_qa.questions", mix, 60, 0.15)).success


def test_on_a_handful_of_rows_the_mix_is_not_judged() -> None:
    mix = check_mix(DEFAULT_MIX)
    suite = mix_suite("rag_qa.questions", mix, 2, 0.15)
    assert gx.validate(_frame(["factual", "factual"]), suite).success


# --- ChainPoll ------------------------------------------------------------------------------


def test_votes_are_read_from_json_or_a_verdict_phrase() -> None:
    vote = parse_vote('{"reasoning": "It says 34 m.", "supported": "yes"}')
    assert vote.supported is True and vote.explanation == "It says 34 m."
    assert parse_vote('```json\n{"supported": false, "reasoning": "x"}\n```').supported is False
    phrase = parse_vote("The date is invented. Verdict: no")
    assert phrase.supported is False and phrase.explanation == "The date is invented."
    broken = parse_vote("I am not sure about this one.")
    assert broken.supported is None and "malformed" in broken.error and broken.raw


def test_score_is_the_share_of_readable_yes_votes_with_the_majority_explanation() -> None:
    yes = parse_vote('{"reasoning": "fine", "supported": "yes"}')
    no = parse_vote('{"reasoning": "adds a year", "supported": "no"}')
    bad = parse_vote("??")
    assert aggregate([yes, no, no]).score == pytest.approx(0.3333, abs=1e-3)
    assert aggregate([yes, no, no]).explanation == "adds a year"
    assert aggregate([yes, yes, no]).explanation == "fine"
    assert aggregate([yes, bad, yes]).score == 1.0
    assert aggregate([yes, no]).explanation == "adds a year"  # a tie: the cautious side
    assert aggregate([bad, bad]).score is None


def test_abstentions_are_recognised() -> None:
    assert abstains("The context does not say. It only gives the height.")
    assert abstains("The passage doesn't mention who designed it.")
    assert abstains("This is not stated in the context.")
    assert not abstains("It stands 34 metres tall.")
    assert not abstains("The context says it was built in 1868.")


# --- winnow adherence -----------------------------------------------------------------------


def test_the_adherence_command_scores_stdin_rows(project_dir) -> None:
    from winnow.cli import app

    def v(reason: str, yes: bool) -> str:
        return json.dumps({"reasoning": reason, "supported": "yes" if yes else "no"})

    rules = [
        Rule(pattern=r"ANSWER: It is 34 metres", replies=[v("ok", True)]),
        Rule(
            pattern=r"ANSWER: It is 90 metres",
            replies=[v("says 34", False), v("34 m", False), v("hm", True)],
        ),
        Rule(pattern=r"ANSWER: broken", replies=["no idea"]),
    ]
    rows = [
        {"id": "a", "context": "The tower is 34 metres tall.", "question": "How tall?",
         "answer": "It is 34 metres tall.", "extra": 1},
        {"id": "b", "context": "The tower is 34 metres tall.", "question": "How tall?",
         "answer": "It is 90 metres tall."},
        {"id": "c", "context": "The tower is 34 metres tall.", "question": "How tall?",
         "answer": "broken"},
    ]  # fmt: skip
    with LLMTestServer(Script(rules=rules)) as server:
        result = CliRunner().invoke(
            app,
            ["adherence", "--provider", "openai-compatible", "--model", "test-model",
             "--base-url", server.base_url, "--judges", "3", "--grounding-min-share", "0"],
            input="\n".join(json.dumps(r) for r in rows) + "\n",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert server.stats.chat_requests == 9
    out = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["id"] for r in out] == ["a", "b", "c"]
    assert out[0]["adherence"] == 1.0 and out[0]["supported"] is True and out[0]["extra"] == 1
    assert out[1]["adherence"] == pytest.approx(0.3333, abs=1e-3) and out[1]["supported"] is False
    assert out[1]["adherence_explanation"] in ("says 34", "34 m")
    assert out[2]["adherence"] is None and out[2]["supported"] is False
    assert "malformed" in out[2]["adherence_error"]


def test_the_adherence_command_refuses_rows_without_fields() -> None:
    from winnow.cli import app

    result = CliRunner().invoke(app, ["adherence"], input='{"id": "x", "context": "c"}\n')
    assert result.exit_code != 0
    assert "missing question, answer" in result.output
