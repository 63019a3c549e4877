"""Shards on a Dask cluster: the RAG QA recipe, run against the scripted test LLM server
once on the default runner (threads of the flow's process) and once on a local Dask
cluster of two worker processes, publishes the same dataset and the same funnel, and the
shards really were made by the workers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tasks.llm.journal import Journal
from tests.recipes.test_rag_qa_flow import check_outcome, params, read_jsonl, script
from winnow.testing.llm_server import LLMTestServer

RUN_IDENTITY = {"run_id", "created_at"}  # provenance fields that name the run and its time


# The J judge votes of one answer are sent at once and the scripted server hands out a
# rule's replies in arrival order, which no runner fixes (two thread runs differ there
# too): those lists are compared as multisets, every other list in order.
VOTE_LISTS = {"votes", "raw"}


def comparable(value: Any, key: str = "") -> Any:
    """A published value without its run's identity."""
    if isinstance(value, dict):
        return {k: comparable(v, k) for k, v in value.items() if k not in RUN_IDENTITY}
    if isinstance(value, list):
        items = [comparable(v) for v in value]
        if key in VOTE_LISTS:
            items.sort(key=lambda v: json.dumps(v, sort_keys=True))
        return items
    return value


def published(out: Path) -> dict[str, Any]:
    """What a reader of the output gets: kept and rejected rows by id, and the funnel."""
    funnel = json.loads((out / "funnel.json").read_text())
    return {
        "dataset": {r["id"]: comparable(r) for r in read_jsonl(out / "dataset.jsonl")},
        "rejected": {
            (r["stage"], r["id"]): comparable(r) for r in read_jsonl(out / "rejected.jsonl")
        },
        "stages": [{k: v for k, v in s.items() if k != "seconds"} for s in funnel["stages"]],
        "kept": funnel["kept"],
        "llm_calls": funnel["llm_calls"],
    }


def shard_makers(root: Path) -> set[str]:
    """host:pid of the processes that made each stage shard under ``root``."""
    markers = root.glob("shards/*/*/_DONE.json")
    return {json.loads(m.read_text()).get("worker", "") for m in markers} - {""}


def rag_qa_on_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, int]:
    """The reference: rag-qa on the default runner, in its own project (journal, catalog,
    shards) against its own fresh server, so a cluster run after it answers nothing from
    this run's journal or shard cache. Returns its parameters and its request count."""
    from flows.rag_qa import rag_qa

    (tmp_path / "threads").mkdir()
    monkeypatch.setenv("WINNOW_PROJECT_DIR", str(tmp_path / "threads"))
    with LLMTestServer(script()) as server:
        base = params(tmp_path / "threads", server.base_url, shard_size=1)
        rag_qa(base)
        check_outcome(Path(base.out))
        calls = server.stats.chat_requests
    here = f":{os.getpid()}"
    assert {w.endswith(here) for w in shard_makers(tmp_path / "threads" / ".winnow")} == {True}
    return base, calls


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_dask_cluster_makes_the_same_dataset(tmp_path, monkeypatch, prefect_harness) -> None:
    from distributed import Client, LocalCluster

    from flows.rag_qa import rag_qa

    base, threads_calls = rag_qa_on_threads(tmp_path, monkeypatch)
    (tmp_path / "dask").mkdir()
    monkeypatch.setenv("WINNOW_PROJECT_DIR", str(tmp_path / "dask"))
    storage = tmp_path / "dask-shards"
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
        LLMTestServer(script()) as server,
    ):
        worker_pids = set(client.run(os.getpid).values())
        on_dask = params(
            tmp_path / "dask",
            server.base_url,
            shard_size=1,
            task_runner="dask",
            dask_address=cluster.scheduler_address,
            storage=f"file://{storage}",
        )
        summary = rag_qa(on_dask)
        assert server.stats.chat_requests == threads_calls
    assert summary["kept"] == 3
    check_outcome(Path(on_dask.out))
    assert published(Path(on_dask.out)) == published(Path(base.out))

    makers = shard_makers(storage)
    pids = {int(w.rsplit(":", 1)[1]) for w in makers}
    assert pids and pids <= worker_pids and os.getpid() not in pids
    assert len(pids) == 2  # both workers took shards
    # the flow's process, the catalog's only writer, registered the workers' shards
    from tasks.store.catalog import Catalog

    catalog = Catalog()
    assert catalog.get_run(summary["run_id"])["status"] == "completed"
    registered = catalog.stage_shards(summary["run_id"], "answers")
    assert len(registered) == 2
    assert all(str(s.path).startswith(str(storage)) for s in registered)
    # the workers journaled their requests where the flow told them: its project
    journal = Journal()
    assert len(journal._all()) == threads_calls
    journal.close()

    # a re-run in the flow's own threads finds every shard the workers finished
    with LLMTestServer(script()) as server:
        again = rag_qa(on_dask.model_copy(update={"task_runner": "threads"}))
        assert server.stats.chat_requests == 0
    assert all(s["reused"] for s in again["stages"])


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_local_ray_cluster_makes_the_same_dataset(tmp_path, monkeypatch, prefect_harness) -> None:
    """``task_runner=ray`` with no address: a temporary local Ray cluster (prefect-ray)
    makes the shards in its worker processes, and the run publishes what the default
    runner publishes."""
    from flows.rag_qa import rag_qa

    base, threads_calls = rag_qa_on_threads(tmp_path, monkeypatch)
    (tmp_path / "ray").mkdir()
    monkeypatch.setenv("WINNOW_PROJECT_DIR", str(tmp_path / "ray"))
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")  # no internet here; don't try
    storage = tmp_path / "ray-shards"
    with LLMTestServer(script()) as server:
        on_ray = params(
            tmp_path / "ray",
            server.base_url,
            shard_size=1,
            task_runner="ray",
            storage=f"file://{storage}",
        )
        summary = rag_qa(on_ray)
        assert server.stats.chat_requests == threads_calls
    assert summary["kept"] == 3
    check_outcome(Path(on_ray.out))
    assert published(Path(on_ray.out)) == published(Path(base.out))
    pids = {int(w.rsplit(":", 1)[1]) for w in shard_makers(storage)}
    assert pids and os.getpid() not in pids  # made by Ray's worker processes


def outcome(out: Path) -> dict[str, Any]:
    """Where every row of a code-sft run ended and why (timings left out: sandbox
    durations differ from run to run)."""
    funnel = json.loads((out / "funnel.json").read_text())
    return {
        "kept": sorted(r["id"] for r in read_jsonl(out / "dataset.jsonl")),
        "rejected": sorted(
            (r["stage"], r["id"], r["reason"]) for r in read_jsonl(out / "rejected.jsonl")
        ),
        "stages": [(s["stage"], s["n_in"], s["n_out"], s["n_rejected"]) for s in funnel["stages"]],
    }


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_code_sft_runs_its_sandbox_on_dask_workers(tmp_path, monkeypatch, prefect_harness) -> None:
    """The code SFT recipe, whose execute stage runs generated code in the sandbox, ends
    every row where the default runner does when its shards run on two Dask workers."""
    from distributed import Client, LocalCluster

    from flows.code_sft import code_sft
    from tests.recipes.test_code_sft_flow import params as sft_params
    from tests.recipes.test_code_sft_flow import script as sft_script

    runs = {}
    for name in ("threads", "dask"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("WINNOW_PROJECT_DIR", str(tmp_path / "threads"))
    with LLMTestServer(sft_script()) as server:
        base = sft_params(tmp_path / "threads", server).model_copy(update={"shard_size": 1})
        code_sft(base)
        runs["threads"] = outcome(Path(base.out))

    monkeypatch.setenv("WINNOW_PROJECT_DIR", str(tmp_path / "dask"))
    storage = tmp_path / "dask-shards"
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
        LLMTestServer(sft_script()) as server,
    ):
        worker_pids = set(client.run(os.getpid).values())
        on_dask = sft_params(tmp_path / "dask", server).model_copy(
            update={
                "shard_size": 1,
                "task_runner": "dask",
                "dask_address": cluster.scheduler_address,
                "storage": f"file://{storage}",
            }
        )
        summary = code_sft(on_dask)
    runs["dask"] = outcome(Path(on_dask.out))
    assert summary["kept"] == 2
    assert runs["dask"] == runs["threads"]
    executed = {
        json.loads(m.read_text())["worker"] for m in storage.glob("shards/execute/*/_DONE.json")
    }
    pids = {int(w.rsplit(":", 1)[1]) for w in executed}
    assert pids and pids <= worker_pids and os.getpid() not in pids
