"""How a run validates a stage's shards: in the gate worker when one runs (GX loaded in
its own process), else here; and the row-wise part alone, for chained stages."""

from __future__ import annotations

from collections.abc import Sequence

from tasks.gates import gx, sharded
from tasks.gates.suites import SuiteSpec
from tasks.gates.worker import worker
from tasks.store.shards import ShardRef


def validate(shards: Sequence[ShardRef], spec: SuiteSpec) -> gx.GateResult:
    """``spec`` over the rows of ``shards`` (not enforced)."""
    return worker().validate(shards, spec) or sharded.validate_shards(shards, spec)


def check_rows(shards: Sequence[ShardRef], spec: SuiteSpec) -> gx.GateResult | None:
    """The row-wise part of ``spec`` on ``shards``, enforced: what a shard's kept rows
    must pass before a chained stage takes them (the whole-dataset part waits for the
    whole output). None when ``spec`` has no row-wise part."""
    rows, _ = sharded.split(spec)
    if rows is None:
        return None
    return gx.enforce(validate(shards, rows))
