"""Record ids, provenance and rejections: the values every recipe shares."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from tasks.records import Provenance, Rejection, canonical_json, content_hash, record_id


def test_record_id_is_stable_and_ignores_keyword_order() -> None:
    a = record_id(prompt="p", completion="c", sample=1)
    b = record_id(sample=1, completion="c", prompt="p")
    assert a == b
    assert len(a) == 16 and int(a, 16) >= 0
    # Known value: pins the canonical form, so ids don't change between releases.
    assert a == content_hash({"completion": "c", "prompt": "p", "sample": 1}, 16)


def test_record_id_tells_apart_what_json_would_blur() -> None:
    ids = {record_id(1), record_id(1.0), record_id(True), record_id("1"), record_id([1])}
    assert len(ids) == 5
    assert record_id("a", "b") != record_id("b", "a")
    assert record_id("x") != record_id(x="x")


def test_record_id_needs_content() -> None:
    with pytest.raises(ValueError):
        record_id()


def test_canonical_json_handles_record_values() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    text = canonical_json({"b": [1, {"y": 2, "x": 1}], "a": when, "c": b"\x01"})
    assert text == '{"a":"2026-01-02T03:04:05+00:00","b":[1,{"x":1,"y":2}],"c":"01"}'
    with pytest.raises(TypeError, match="not JSON-like"):
        canonical_json({"a": object()})


def test_provenance_round_trips_as_json() -> None:
    prov = Provenance(
        run_id="r1",
        recipe="code_sft",
        stage="generate",
        template="solve",
        template_version="3",
        provider="local",
        model="qwen",
        params={"temperature": 0.7},
        round=2,
    )
    data = prov.to_json()
    assert data["round"] == 2 and data["params"] == {"temperature": 0.7}
    assert Provenance.model_validate(data) == prov
    assert prov.created_at.tzinfo is not None
    with pytest.raises(ValidationError):
        Provenance(run_id="r", recipe="x", stage="s", unknown=1)  # type: ignore[call-arg]


def test_rejection_requires_a_reason() -> None:
    rej = Rejection(record_id="abc", run_id="r", stage="verify", reason="tests_failed")
    assert rej.detail is None and rej.record is None
    with pytest.raises(ValidationError):
        Rejection(record_id="abc", run_id="r", stage="verify", reason="")
