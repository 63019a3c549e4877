"""The local provider: the embedded GGUF run in-process by llama.cpp."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from tasks.llm.base import ChatRequest, ConfigError, GenerationParams, Message
from tasks.llm.client import make_client
from tasks.llm.local_provider import _models


def test_missing_gguf_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("WINNOW_MODEL_PATH", str(tmp_path / "nope.gguf"))
    with pytest.raises(ConfigError, match="nope.gguf"):
        make_client("local").check()
    with pytest.raises(ConfigError, match="not found"):
        make_client("local", model=str(tmp_path / "other.gguf")).check()


def test_a_file_that_is_not_a_gguf_is_a_config_error(tmp_path):
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="cannot load"):
        make_client("local", model=str(fake)).check()


@pytest.mark.slow
def test_real_model_writes_text_and_valid_json(model_path, monkeypatch):
    monkeypatch.setenv("WINNOW_MODEL_PATH", str(model_path))
    client = make_client("local")
    plain = ChatRequest(
        messages=[Message(role="user", content="Name one primary colour. One word.")],
        params=GenerationParams(temperature=0.0, max_tokens=8, seed=1),
    )
    [text] = client.complete_many([plain])
    assert text.ok and text.text and text.text.strip()
    assert text.cost_usd == 0.0 and text.usage.completion_tokens > 0
    assert client.model == model_path.name

    class Sum(BaseModel):
        answer: int

    question = ChatRequest(
        messages=[
            Message(role="system", content='Reply with JSON like {"answer": <integer>}.'),
            Message(role="user", content="What is 2 + 3?"),
        ],
        params=GenerationParams(temperature=0.0, max_tokens=32, seed=1),
    )
    [result] = client.complete_json([question], Sum)
    assert result.ok, result
    assert result.value == {"answer": 5}

    # The model is loaded once per process, and a re-run comes from the journal.
    again = make_client("local")
    [cached] = again.complete_json([question], Sum)
    assert all(r.cached for r in cached.results) and cached.value == result.value
    assert len(_models) == 1
