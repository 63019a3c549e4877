"""The DuckDB catalog: a real file, real second processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from tasks.core.paths import catalog_path
from tasks.core.records import Provenance, Rejection
from tasks.store.catalog import AmbiguousRunId, Catalog, CatalogLocked, RunNotFound
from tasks.store.shards import write_shard

ROOT = Path(__file__).resolve().parents[2]


def _start_python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run_python(code: str, *args: str) -> str:
    """Run ``code`` in a new interpreter; return its stdout, fail the test on an error."""
    proc = _start_python(code, *args)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out


@pytest.fixture
def catalog() -> Catalog:
    return Catalog()


def _a_run(catalog: Catalog, run_id: str = "run-20260101-abcdef") -> str:
    catalog.start_run(
        run_id, "code_sft", {"n": 10, "model": "qwen"}, model="qwen", provider="local"
    )
    return run_id


def test_default_path_is_the_projects(catalog: Catalog, project_dir: Path) -> None:
    assert catalog.path == catalog_path() == project_dir / ".winnow" / "catalog.duckdb"
    assert not catalog.path.exists()
    assert catalog.runs() == []  # reading an absent catalog creates nothing
    assert not catalog.path.exists()
    assert catalog.get_run("nope") is None
    with pytest.raises(RunNotFound):
        catalog.funnel("nope")


def test_run_lifecycle_and_prefix_lookup(catalog: Catalog) -> None:
    run_id = _a_run(catalog)
    catalog.update_run(run_id, flow_run_id="flow-1")
    catalog.finish_run(run_id, "completed", summary={"kept": 3}, out_dir=Path("/data/out"))
    run = catalog.get_run("run-2026")
    assert run["run_id"] == run_id and run["status"] == "completed"
    assert run["params"] == {"n": 10, "model": "qwen"} and run["summary"] == {"kept": 3}
    assert run["flow_run_id"] == "flow-1" and run["out_dir"] == "/data/out"
    assert run["finished_at"] >= run["started_at"]
    _a_run(catalog, "run-20260101-abc999")
    with pytest.raises(AmbiguousRunId, match="several runs"):
        catalog.get_run("run-20260101-abc")
    assert catalog.get_run(run_id)["run_id"] == run_id  # an exact id always wins
    assert [r["run_id"] for r in catalog.runs(limit=1)] == ["run-20260101-abc999"]
    assert catalog.get_run("run-2099") is None
    assert len(catalog.runs(recipe="code_sft")) == 2 and catalog.runs(recipe="rag") == []
    with pytest.raises(RunNotFound):
        catalog.finish_run("missing", "failed")
    with pytest.raises(ValueError, match="can't update"):
        catalog.update_run(run_id, recipe="x")


def test_funnel_in_stage_order_and_resume_overwrites(catalog: Catalog, tmp_path: Path) -> None:
    run_id = _a_run(catalog)
    shard = write_shard([{"record_id": "r1"}], tmp_path / "generate" / "000.parquet")
    catalog.record_stage(run_id, "generate", n_in=10, n_out=8, n_rejected=2, shards=[shard])
    catalog.record_stage(run_id, "verify", n_in=8, n_out=5, n_rejected=2)
    catalog.record_stage(run_id, "generate", n_in=10, n_out=9, n_rejected=1, shards=[shard])
    catalog.add_rejections(
        run_id,
        [
            {"stage": "verify", "record_id": "r2", "reason": "tests_failed"},
            Rejection(record_id="r3", run_id=run_id, stage="verify", reason="lint"),
        ],
    )
    funnel = catalog.funnel(run_id[:8])
    assert [(f["stage"], f["n_in"], f["n_out"], f["n_rejected"]) for f in funnel] == [
        ("generate", 10, 9, 1),
        ("verify", 8, 5, 2),
    ]
    assert funnel[1]["n_rejections_recorded"] == 2
    assert funnel[1]["n_unaccounted"] == 1  # 8 in, 5 out, 2 rejected: one lost silently
    shards = catalog.stage_shards(run_id, "generate")
    assert [(s.path, s.rows, s.fingerprint) for s in shards] == [(shard.path, 1, shard.fingerprint)]

    @dataclass
    class Ref:  # the shape of tasks.pipeline.stage.ShardRef
        path: str
        rows: int
        fingerprint: str

    catalog.record_stage(
        run_id, "judge", n_in=5, n_out=1, n_rejected=4, shards=[Ref("/x/a.parquet", 1, "f"), "/y"]
    )
    assert [s.path for s in catalog.stage_shards(run_id, "judge")] == [Path("/x/a.parquet")]
    assert [f["stage"] for f in catalog.funnel(run_id)] == ["generate", "verify", "judge"]


def test_rejections_are_batched_decoded_and_not_doubled(catalog: Catalog) -> None:
    run_id = _a_run(catalog)
    rows = [
        {
            "stage": "verify",
            "record_id": f"r{i}",
            "reason": "tests_failed" if i % 3 else "timeout",
            "detail": {"stderr": "AssertionError", "exit": 1},
            "record": {"code": f"def f(): return {i}"},
        }
        for i in range(300)
    ]
    assert catalog.add_rejections(run_id, rows) == 300
    assert catalog.add_rejections(run_id, rows[:10]) == 10  # a resumed shard, again
    assert catalog.add_rejections(run_id, []) == 0
    reasons = catalog.rejection_reasons(run_id)
    assert [(r["stage"], r["reason"], r["count"]) for r in reasons] == [
        ("verify", "tests_failed", 200),
        ("verify", "timeout", 100),
    ]
    assert catalog.rejection_reasons(run_id, limit=1, stage="nope") == []
    some = catalog.rejections(run_id, reason="timeout", limit=2)
    assert len(some) == 2 and some[0]["detail"] == {"stderr": "AssertionError", "exit": 1}
    assert some[0]["record"]["code"].startswith("def f()")
    with pytest.raises(ValueError):
        catalog.add_rejections(run_id, [{"stage": "verify", "record_id": "x", "reason": ""}])
    # Rejections without an id can't be matched, so each call adds them: none is lost.
    anonymous = [{"stage": "parse", "record_id": "", "reason": "json_parse"}] * 2
    catalog.add_rejections(run_id, anonymous)
    catalog.add_rejections(run_id, anonymous)
    assert catalog.rejection_reasons(run_id, stage="parse")[0]["count"] == 4


def test_costs_by_stage_and_model_without_double_counting(catalog: Catalog) -> None:
    run_id = _a_run(catalog)
    calls = [
        {
            "key": f"k{i}",
            "provider": "openai",
            "model": "gpt-x",
            "template": "solve",
            "template_version": "2",
            "usage": {"prompt_tokens": 100, "completion_tokens": 50},
            "cost_usd": 0.01,
            "latency_s": 1.5,
            "error": "",  # how tasks.pipeline.stage.call_row says "no error"
        }
        for i in range(4)
    ]
    assert catalog.add_llm_calls(run_id, calls, stage="generate") == 4
    # A replay of the same requests (the journal answers them) adds nothing.
    replay = [{**c, "cached": True, "cost_usd": 0.0} for c in calls]
    catalog.add_llm_calls(run_id, replay, stage="generate")
    catalog.add_llm_calls(
        run_id,
        [
            {
                "stage": "judge",
                "key": "j1",
                "provider": "local",
                "model": "qwen",
                "prompt_tokens": 10,
                "completion_tokens": 2,
                "cached": True,
            },
            {
                "stage": "judge",
                "key": "j2",
                "provider": "local",
                "model": "qwen",
                "error": "timeout",
            },
        ],
    )
    catalog.record_stage(run_id, "generate", n_in=4, n_out=4, n_rejected=0)
    catalog.record_stage(run_id, "judge", n_in=4, n_out=2, n_rejected=2)
    costs = catalog.costs(run_id)
    assert costs["calls"] == 6 and costs["cached_calls"] == 1 and costs["failed_calls"] == 1
    assert costs["prompt_tokens"] == 410 and costs["completion_tokens"] == 202
    assert costs["cost_usd"] == pytest.approx(0.04)
    assert costs["kept"] == 2 and costs["cost_per_kept_usd"] == pytest.approx(0.02)
    assert {s["stage"]: s["calls"] for s in costs["by_stage"]} == {"generate": 4, "judge": 2}
    assert costs["by_model"][0]["model"] == "gpt-x"
    assert costs["by_model"][0]["cost_usd"] == pytest.approx(0.04)
    [listed] = catalog.runs()
    assert listed["n_kept"] == 2 and listed["cost_usd"] == pytest.approx(0.04)
    with pytest.raises(ValueError, match="stage"):
        catalog.add_llm_calls(run_id, [{"key": "k"}])


def test_validations_and_record_lineage(catalog: Catalog) -> None:
    run_id = _a_run(catalog)
    catalog.record_stage(run_id, "generate", n_in=1, n_out=1, n_rejected=0)
    catalog.add_validation(
        run_id,
        "generate",
        {
            "suite": "generate.completions",
            "severity": "critical",
            "success": False,
            "n_expectations": 3,
            "n_failed": 1,
            "failures": [{"expectation": "x"}],
            "duration_s": 0.04,
        },
    )
    [stored] = catalog.validations(run_id)
    assert stored["success"] is False and stored["details"] == [{"expectation": "x"}]
    prov = Provenance(run_id=run_id, recipe="code_sft", stage="generate", model="qwen")
    records = [{"record_id": "r1", "provenance": prov}, {"record_id": "r2", "parent_id": "r1"}]
    assert catalog.register_records(run_id, "generate", records) == 2
    catalog.register_records(run_id, "generate", records)  # again: replaced, not doubled
    [lineage] = catalog.record_lineage(run_id, "r1")
    assert lineage["provenance"]["model"] == "qwen" and lineage["stage"] == "generate"
    assert catalog.query("SELECT count(*) AS n FROM records") == [{"n": 2}]
    with pytest.raises(ValueError, match="record_id"):
        catalog.register_records(run_id, "generate", [{"provenance": {}}])


def test_batch_insert_is_fast(catalog: Catalog) -> None:
    run_id = _a_run(catalog)
    rows = [{"stage": "verify", "record_id": f"r{i}", "reason": "lint"} for i in range(20_000)]
    started = time.perf_counter()
    catalog.add_rejections(run_id, rows)
    assert time.perf_counter() - started < 10  # row by row would take ~10 s
    assert catalog.funnel(run_id) == []
    assert catalog.rejection_reasons(run_id)[0]["count"] == 20_000


READER = """
import sys
from tasks.store.catalog import Catalog
c = Catalog(sys.argv[1], lock_timeout=30)
print(c.get_run(sys.argv[2][:10])["status"], len(c.funnel(sys.argv[2])))
"""

WRITER = """
import sys
from tasks.store.catalog import Catalog
c = Catalog(sys.argv[1], lock_timeout=30)
c.start_run(sys.argv[2], "rag", {"who": sys.argv[2]})
for i in range(5):
    c.record_stage(sys.argv[2], f"s{i}", n_in=10, n_out=10 - i, n_rejected=i)
c.finish_run(sys.argv[2], "completed")
"""


def test_second_process_reads_while_this_one_is_not_writing(catalog: Catalog) -> None:
    run_id = _a_run(catalog)
    catalog.record_stage(run_id, "generate", n_in=3, n_out=3, n_rejected=0)
    out = _run_python(READER, str(catalog.path), run_id)
    assert out.split() == ["running", "1"]
    catalog.finish_run(run_id, "completed")  # and this process can write again afterwards
    assert catalog.get_run(run_id)["status"] == "completed"


def test_two_writer_processes_one_after_the_other(catalog: Catalog) -> None:
    _run_python(WRITER, str(catalog.path), "run-a")
    _run_python(WRITER, str(catalog.path), "run-b")
    assert {r["run_id"] for r in catalog.runs()} == {"run-a", "run-b"}
    assert [f["n_out"] for f in catalog.funnel("run-b")] == [10, 9, 8, 7, 6]


def test_concurrent_writer_processes_wait_for_each_other(catalog: Catalog) -> None:
    procs = [_start_python(WRITER, str(catalog.path), f"run-{i}") for i in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert len(catalog.runs()) == 3
    assert all(len(catalog.funnel(f"run-{i}")) == 5 for i in range(3))


HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def test_waits_for_a_lock_holder_then_gives_up_clearly(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "c.duckdb", lock_timeout=20)
    _a_run(catalog)
    holder = _start_python(HOLDER, str(catalog.path), "1.0")
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    started = time.perf_counter()
    catalog.record_stage("run-20260101-abcdef", "generate", n_in=1, n_out=1, n_rejected=0)
    assert time.perf_counter() - started > 0.3  # it did wait, then wrote
    holder.communicate(timeout=30)
    assert len(catalog.funnel("run-20260101-abcdef")) == 1

    impatient = Catalog(catalog.path, lock_timeout=0.3)
    holder = _start_python(HOLDER, str(catalog.path), "3")
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    try:
        with pytest.raises(CatalogLocked, match="stayed locked"):
            impatient.runs()
    finally:
        holder.kill()
        holder.communicate(timeout=30)


def test_catalog_is_plain_duckdb(catalog: Catalog) -> None:
    run_id = _a_run(catalog)
    catalog.record_stage(run_id, "generate", n_in=2, n_out=1, n_rejected=1)
    con = duckdb.connect(str(catalog.path), read_only=True)
    try:
        tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
        assert {"runs", "stages", "records", "rejections", "llm_calls", "validations"} <= tables
        assert con.execute("SELECT params->>'$.model' FROM runs").fetchone() == ("qwen",)
    finally:
        con.close()


def test_an_older_catalog_gains_the_attempts_column(tmp_path: Path) -> None:
    """A catalog made before LLM calls counted their attempts is migrated in place."""
    import duckdb

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE llm_calls (run_id VARCHAR NOT NULL, stage VARCHAR NOT NULL, "
        "key VARCHAR NOT NULL, provider VARCHAR, model VARCHAR, template VARCHAR, "
        "template_version VARCHAR, prompt_tokens BIGINT, completion_tokens BIGINT, "
        "cost_usd DOUBLE, latency_s DOUBLE, cached BOOLEAN, error VARCHAR, "
        "created_at TIMESTAMP, PRIMARY KEY (run_id, stage, key))"
    )
    con.close()
    catalog = Catalog(path)
    catalog.start_run(run_id="r1", recipe="x", params={})
    catalog.add_llm_calls("r1", [{"stage": "s", "key": "k1", "attempts": 3}], stage="s")
    assert catalog.costs("r1")["sends"] == 3
