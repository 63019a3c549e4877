"""Record ids, provenance and rejections: the values every recipe shares."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from tasks.core.records import Provenance, Rejection, canonical_json, record_id


def test_record_id_is_stable_and_prefixed() -> None:
    a = record_id("p", "Reverse a string.")
    assert a == record_id("p", "Reverse a string.")
    assert a.startswith("p-") and len(a) == 2 + 12 and int(a[2:], 16) >= 0
    # Known value: pins the id of a record, so ids don't change between releases.
    assert a == "p-" + hashlib.sha256(b"Reverse a string.").hexdigest()[:12]


def test_record_id_tells_its_parts_apart() -> None:
    assert record_id("x", "a", "b") != record_id("x", "b", "a")
    assert record_id("x", "ab") != record_id("x", "a", "b")
    assert record_id("x", "a") != record_id("y", "a")
    with pytest.raises(ValueError):
        record_id("x")


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


def test_a_rejection_reads_back_the_row_it_wrote() -> None:
    """One shape from the stage's shard to rejected.jsonl: what a stage writes is read
    back whole, and published under the record's id."""
    rej = Rejection.of({"id": "c-1", "code": "x"}, "execute", "tests failed", {"exit": 1})
    row = rej.row()
    assert row == {
        "record_id": "c-1",
        "stage": "execute",
        "reason": "tests failed",
        "detail": {"exit": 1},
        "record": {"id": "c-1", "code": "x"},
    }
    back = Rejection.from_row(row)
    assert back.published() == {**{k: v for k, v in row.items() if k != "record_id"}, "id": "c-1"}
