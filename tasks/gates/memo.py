"""Gate results remembered by content, so a re-run does not validate the same rows again.

A suite's verdict depends only on the suite and the rows it reads, so a result is stored
under a key over the suite's full spec and the content fingerprints of the stage's kept
shards. A cached re-run of a finished recipe then neither imports Great Expectations
(seconds and hundreds of MB) nor reads its shards back into a frame; a changed suite or
changed rows make a new key and a real validation.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence

from tasks.core.paths import state_dir
from tasks.gates.gx import GateResult
from tasks.gates.suites import SuiteSpec

_VERSION = "2"  # bump when GateResult or validation semantics change


def gate_key(spec: SuiteSpec, fingerprints: Sequence[str]) -> str:
    blob = json.dumps(
        {"v": _VERSION, "suite": spec.model_dump(mode="json"), "rows": list(fingerprints)},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _path(key: str):
    return state_dir() / "gates" / f"{key}.json"


def recall(key: str) -> GateResult | None:
    """The result stored under ``key``, or None (also for an unreadable file)."""
    try:
        return GateResult.model_validate_json(_path(key).read_text())
    except (OSError, ValueError):
        return None


def remember(key: str, result: GateResult) -> None:
    """Store ``result`` atomically (a reader sees the whole file or none)."""
    path = _path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(result.model_dump_json())
    os.replace(tmp, path)
