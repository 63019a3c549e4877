"""Structured output: validate, re-ask with the error, keep the raw answer."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, Field

from tasks.llm.base import ChatRequest, Message
from tasks.llm.structured import extract_json, validate
from winnow.testing.llm_server import Rule, Script


class Verdict(BaseModel):
    label: str
    score: int = Field(ge=0, le=10)
    reasons: list[str] = []


def req(text: str) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)], template="judge")


GOOD = json.dumps({"label": "SUPPORTED", "score": 8})


def test_valid_first_answer(llm_server, llm_client):
    llm_server.set_script(Script(rules=[Rule(pattern="judge", replies=[GOOD])]))
    [result] = llm_client().complete_json([req("judge this")], Verdict)
    assert result.ok and result.attempts == 1
    assert result.value == {"label": "SUPPORTED", "score": 8, "reasons": []}
    assert len(result.results) == 1


def test_reask_then_success_and_rerun_is_free(llm_server, llm_client):
    llm_server.set_script(
        Script(
            rules=[
                # The re-ask carries the error and the schema back to the model.
                Rule(pattern="could not be used.*score", replies=[GOOD]),
                Rule(pattern="judge", replies=['{"label": "SUPPORTED", "score": 42}']),
            ]
        )
    )
    [result] = llm_client().complete_json([req("judge this")], Verdict)
    assert result.ok and result.attempts == 2
    assert result.value is not None and result.value["score"] == 8
    first, second = result.results
    assert first.key != second.key  # each re-ask is its own journaled request
    assert llm_server.stats.chat_requests == 2

    [again] = llm_client().complete_json([req("judge this")], Verdict)
    assert again.value == result.value and all(r.cached for r in again.results)
    assert llm_server.stats.chat_requests == 2


def test_reasks_exhausted_keep_the_raw_answer(llm_server, llm_client):
    llm_server.set_script(Script(rules=[Rule(pattern=".", replies=["Sure! The label is X."])]))
    [result] = llm_client().complete_json([req("judge")], Verdict, max_reasks=2)
    assert not result.ok and result.value is None
    assert result.raw == "Sure! The label is X."
    assert "not valid JSON" in (result.error or "")
    assert result.attempts == 3 and llm_server.stats.chat_requests == 3


def test_json_mode_is_sent(llm_server, llm_client):
    # The server's default answer in JSON mode is {"echo": <last user message>}.
    class Echo(BaseModel):
        echo: str

    [result] = llm_client().complete_json([req("ping")], Echo)
    assert result.value == {"echo": "ping"}


def test_a_failed_request_is_not_reasked(llm_server, llm_client):
    llm_server.set_script(Script(rules=[Rule(pattern=".", replies=["!500"])]))
    results = llm_client(max_retries=1).complete_json([req("a"), req("b")], Verdict)
    assert all(not r.ok and r.attempts == 1 and "500" in (r.error or "") for r in results)


def test_order_and_callbacks(llm_server, llm_client):
    class Echo(BaseModel):
        echo: str

    seen: dict[int, str] = {}
    results = llm_client().complete_json(
        [req(f"n{i}") for i in range(10)],
        Echo,
        on_result=lambda i, r: seen.__setitem__(i, r.value["echo"]),
    )
    assert [r.value["echo"] for r in results] == [f"n{i}" for i in range(10)]
    assert seen == {i: f"n{i}" for i in range(10)}


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1}',
        '```json\n{"a": 1}\n```',
        'Here you go: {"a": 1} hope it helps',
        '  \n{"a": 1}\n',
    ],
)
def test_extract_json_finds_the_object(text):
    assert extract_json(text) == {"a": 1}


def test_validate_reports_field_errors_and_non_objects():
    assert validate("[1, 2]", Verdict) == (None, "expected a JSON object, got list")
    value, error = validate('{"label": "x", "score": "high"}', Verdict)
    assert value is None and error is not None and "score" in error
