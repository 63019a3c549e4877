"""Values every recipe shares: where a record came from, and why one was turned away.

A record is a JSON-like ``dict``. Its identity is a content hash (``record_id``) of the
fields that define it, so the same candidate produced twice (a rerun, a resumed shard)
gets the same id, and a rejection can point at the record it rejected.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

RECORD_ID_LENGTH = 16  # hex chars = 64 bits: collisions are negligible below ~10^9 records


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)`` for the non-JSON values records may carry."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    raise TypeError(f"value of type {type(value).__name__} is not JSON-like: {value!r}")


def canonical_json(value: Any) -> str:
    """The one JSON text of ``value``: sorted keys, no whitespace, UTF-8 kept as is.

    ``1`` and ``1.0`` and ``True`` stay three different texts, so they hash differently.
    """
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=json_default,
        allow_nan=True,
    )


def content_hash(value: Any, length: int | None = None) -> str:
    """sha256 hex digest of the canonical JSON of ``value`` (optionally a prefix)."""
    digest = hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()
    return digest[:length] if length else digest


def record_id(*parts: Any, **fields: Any) -> str:
    """A stable id for a record: the hash of the fields that define it.

    Pass the defining values positionally (``record_id(prompt, completion)``) or by name
    (``record_id(prompt=p, sample=3)``); the two forms give different ids, and the order
    of keyword arguments does not matter. Don't put run ids or timestamps in here unless
    the same content from two runs should really be two records.
    """
    if not parts and not fields:
        raise ValueError("record_id() needs at least one field")
    payload: dict[str, Any] = {}
    if parts:
        payload["_"] = list(parts)
    payload.update(fields)
    return content_hash(payload, RECORD_ID_LENGTH)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Provenance(BaseModel):
    """Which run, stage, prompt template and model made a record, with what parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str
    recipe: str
    stage: str
    template: str = ""
    template_version: str = ""
    provider: str = ""
    model: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    round: int = 0  # self-improvement round: which generation of the model made this
    created_at: datetime = Field(default_factory=_utcnow)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class Rejection(BaseModel):
    """A record a stage did not pass on, and why. ``reason`` is a short, countable code
    (``"tests_failed"``, ``"json_parse"``); ``detail`` carries the specifics (stderr,
    the judge's score) and ``record`` the rejected record itself when it is worth keeping.
    """

    model_config = ConfigDict(extra="forbid")

    record_id: str
    run_id: str
    stage: str
    reason: str = Field(min_length=1)
    detail: dict[str, Any] | None = None
    record: dict[str, Any] | None = None
    at: datetime = Field(default_factory=_utcnow)


def as_plain_dict(value: BaseModel | Mapping[str, Any]) -> dict[str, Any]:
    """A pydantic model or a mapping as a plain ``dict`` (models dumped JSON-safe)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return dict(value)
