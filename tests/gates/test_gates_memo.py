"""Gate results are reused for the same suite on the same rows (a cached re-run does not
validate again), and recomputed when either changes; a remembered failure still stops."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from tasks.gates import gx
from tasks.gates.suites import ExpectationSpec, SuiteSpec
from tasks.pipeline.run import Run
from tasks.pipeline.runner import run_stage, write_input_shards
from tasks.pipeline.stage import RunInfo, Stage, StageContext, StageResult


class NoParams(BaseModel):
    pass


def keep_all(rows: list[dict[str, Any]], config: NoParams, ctx: StageContext) -> StageResult:
    return StageResult(kept=list(rows))


KEEP_ALL = Stage("keep_all", keep_all)


def suite(max_n: int, severity: str = "critical") -> SuiteSpec:
    return SuiteSpec(
        name="memo.test",
        severity=severity,
        expectations=[
            ExpectationSpec(
                type="expect_column_values_to_be_between",
                kwargs={"column": "n", "min_value": 0, "max_value": max_n},
            )
        ],
    )


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts real validations (the suite name each time), still running them, in this
    process (no gate worker)."""
    monkeypatch.setenv("WINNOW_GATE_WORKER", "0")
    seen: list[str] = []
    real = gx.validate

    def counted(frame, spec):
        seen.append(spec.name)
        return real(frame, spec)

    monkeypatch.setattr(gx, "validate", counted)
    return seen


def output(n: int):
    shards = write_input_shards([{"id": f"r{i}", "n": i} for i in range(n)], 4, "memo")
    return run_stage(KEEP_ALL, shards, NoParams(), RunInfo(run_id="r", recipe="t"))


def test_same_suite_on_same_rows_is_validated_once(validations: list[str]) -> None:
    run = Run("memo", NoParams())
    first = run.gate(output(10), suite(100))
    again = Run("memo", NoParams()).gate(output(10), suite(100))
    assert validations == ["memo.test"]
    assert again == first and again.success and again.n_rows == 10
    Run("memo", NoParams()).gate(output(11), suite(100))  # other rows
    Run("memo", NoParams()).gate(output(10), suite(50))  # other suite
    assert len(validations) == 3


def test_a_remembered_failure_still_stops_the_run(validations: list[str]) -> None:
    with pytest.raises(gx.GateFailed):
        Run("memo", NoParams()).gate(output(10), suite(5))
    with pytest.raises(gx.GateFailed) as info:
        Run("memo", NoParams()).gate(output(10), suite(5))
    assert validations == ["memo.test"]
    assert info.value.result.n_failed == 1
