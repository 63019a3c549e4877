"""Values every recipe shares: a record's id, where it came from, and why it was turned away.

A record is a JSON-like ``dict``. Its id is a short content hash of the fields that define
it (``record_id("p", problem)``), so the same candidate produced twice (a rerun, a resumed
shard) gets the same id, and a rejection can point at the record it rejected. Every stage,
curation step and publisher builds provenance and rejections through the models here, so
the shapes stay the same from the shard files to ``rejected.jsonl`` and the catalog.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

ID_HASH_LENGTH = 12  # hex chars = 48 bits per prefix: collisions negligible below ~10^7


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
    """The one JSON text of ``value``: sorted keys, no whitespace, UTF-8 kept as is. Every
    fingerprint and cache key of Winnow hashes this text.

    ``1`` and ``1.0`` and ``True`` stay three different texts, so they hash differently.
    """
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
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


def record_id(prefix: str, *parts: str) -> str:
    """A stable id for a record, ``<prefix>-<12 hex>``, from the texts that define it.

    Don't put run ids or timestamps in ``parts`` unless the same content from two runs
    should really be two records.
    """
    if not parts:
        raise ValueError("record_id() needs at least one defining part")
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:ID_HASH_LENGTH]
    return f"{prefix}-{digest}" if prefix else digest


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Provenance(BaseModel):
    """Which run, stage, prompt template and model made a record, with what parameters,
    and the journal key of the request that answered (``winnow show`` follows it)."""

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
    request_key: str = ""
    created_at: datetime = Field(default_factory=_utcnow)
    # How probable the model found the answer (mean token log-probability and its
    # perplexity), where the provider returned token log-probabilities with it.
    mean_logprob: float | None = None
    perplexity: float | None = None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class Rejection(BaseModel):
    """A record a stage did not pass on, and why. ``reason`` says why in a short sentence
    that counts well (``"execute: tests failed"``); ``detail`` carries the specifics
    (stderr, the judge's score) and ``record`` the rejected record itself.

    Shard files hold :meth:`row`; ``rejected.jsonl`` holds :meth:`published`; the catalog
    stores the fields with the run's id.
    """

    model_config = ConfigDict(extra="forbid")

    record_id: str
    stage: str
    reason: str = Field(min_length=1)
    detail: dict[str, Any] | None = None
    record: dict[str, Any] | None = None
    run_id: str = ""
    at: datetime = Field(default_factory=_utcnow)

    @classmethod
    def of(
        cls,
        record: Mapping[str, Any],
        stage: str,
        reason: str,
        detail: dict[str, Any] | None = None,
    ) -> Rejection:
        return cls(
            record_id=str(record.get("id", "")),
            stage=stage,
            reason=reason,
            detail=detail or {},
            record=dict(record),
        )

    @classmethod
    def from_row(cls, row: Mapping[str, Any], stage: str = "") -> Rejection:
        """Read back a shard's rejection row (``stage`` fills in for an old row without)."""
        return cls(
            record_id=str(row.get("record_id", "")),
            stage=row.get("stage") or stage,
            reason=row.get("reason") or "(no reason recorded)",
            detail=row.get("detail") or {},
            record=row.get("record") or {},
        )

    def row(self) -> dict[str, Any]:
        """The row a stage writes to its ``rejected`` shard."""
        return {
            "record_id": self.record_id,
            "stage": self.stage,
            "reason": self.reason,
            "detail": self.detail or {},
            "record": self.record or {},
        }

    def published(self) -> dict[str, Any]:
        """The line of ``rejected.jsonl``: the shard's row, under the record's ``id``."""
        row = self.row()
        return {"id": row.pop("record_id"), **row}


def as_plain_dict(value: BaseModel | Mapping[str, Any]) -> dict[str, Any]:
    """A pydantic model or a mapping as a plain ``dict`` (models dumped JSON-safe)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return dict(value)
