"""Shards behind an fsspec URL: ``memory://`` stands in for an object store (same code
path as ``s3://``, in one process); ``file://`` is the local route under another name."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from tasks.core.paths import Location, project_dir, shard_root
from tasks.pipeline.publish import preference_pairs
from tasks.pipeline.runner import run_global, run_stage, write_input_shards
from tasks.pipeline.stage import RunInfo, Stage, StageContext, StageResult
from tasks.store import fsio
from tasks.store.shards import iter_shards, read_frame, read_shard, shard_info, write_shard

RUN = RunInfo(run_id="r1", recipe="test")
CALLS: list[int] = []


class NoConfig(BaseModel):
    pass


def passing(rows: list[dict[str, Any]], config: NoConfig, ctx: StageContext) -> StageResult:
    CALLS.append(len(rows))
    out = StageResult()
    for row in rows:
        if row["ok"]:
            out.kept.append(row)
        else:
            out.reject(row, ctx.stage, "failed its tests")
    return out


PASSING = Stage("passing", passing)


def candidates() -> list[dict[str, Any]]:
    return [
        {"id": f"p{i}-{j}", "problem_id": f"p{i}", "problem": f"task {i}",
         "solution": f"def f(): return {i * 10 + j}", "ok": j == 0, "tests": [i, j]}
        for i in range(3)
        for j in range(2)
    ]  # fmt: skip


@pytest.fixture
def bucket() -> str:
    """A fresh root in fsspec's in-memory filesystem."""
    return f"memory://winnow-test-{uuid.uuid4().hex[:8]}"


def test_a_shard_round_trips_through_a_url(bucket: str) -> None:
    rows = [{"id": "a", "n": 1, "meta": {"k": [1, 2]}}, {"id": "b", "n": None}]
    url = fsio.join(bucket, "x", "shard.parquet")
    info = write_shard(rows, url)
    assert info.path == url and info.rows == 2
    assert read_shard(url) == rows
    assert list(iter_shards([url], columns=["id"])) == [{"id": "a"}, {"id": "b"}]
    assert shard_info(url).fingerprint == info.fingerprint
    frame = read_frame([url])
    assert list(frame["id"]) == ["a", "b"] and frame["meta"][0] == {"k": [1, 2]}
    assert not (project_dir() / ".winnow").exists()  # nothing went to the local disk


def test_a_run_keeps_its_shards_and_its_cache_under_the_url(bucket: str) -> None:
    CALLS.clear()
    where = Location.here(bucket)
    with where.active():
        assert shard_root() == bucket
        inputs = write_input_shards(candidates(), 4, "t")
    assert all(s.path.startswith(bucket + "/inputs/t/") for s in inputs)

    out = run_stage(PASSING, inputs, NoConfig(), RUN, location=where)
    assert (out.n_in, out.n_kept, out.n_rejected) == (6, 3, 3)
    assert all(s.path.startswith(bucket + "/shards/passing/") for s in out.kept)
    assert sorted(r["id"] for r in out.kept_rows()) == ["p0-0", "p1-0", "p2-0"]
    assert CALLS == [4, 2]
    assert shard_root() != bucket  # the location was active only inside

    again = run_stage(PASSING, inputs, NoConfig(), RUN, location=where)
    assert again.reused and CALLS == [4, 2]  # the markers behind the URL were found
    elsewhere = run_stage(PASSING, inputs, NoConfig(), RUN)  # the local root: no cache
    assert not elsewhere.reused and CALLS == [4, 2, 4, 2]
    assert all(Path(s.path).is_relative_to(project_dir()) for s in elsewhere.kept)

    pairs = list(preference_pairs(out, [out]))  # DuckDB reads the shards through fsspec
    assert [(p["metadata"]["problem_id"], p["chosen"], p["rejected"]) for p in pairs] == [
        (f"p{i}", f"def f(): return {i * 10}", f"def f(): return {i * 10 + 1}") for i in range(3)
    ]


def test_a_whole_dataset_step_writes_under_the_url(bucket: str) -> None:
    from tasks.curation.exact import ExactDedupConfig, exact_dedup_stage

    with Location.here(bucket).active():
        inputs = write_input_shards(candidates() + candidates()[:2], 3, "t")
        unique = run_global(
            exact_dedup_stage("dedup"), inputs, ExactDedupConfig(fields=["id"]), RUN
        )
        assert unique.n_kept == 6 and unique.n_rejected == 2
        assert all(s.path.startswith(bucket) for s in unique.kept + unique.rejected)
        again = run_global(exact_dedup_stage("dedup"), inputs, ExactDedupConfig(fields=["id"]), RUN)
        assert again.reused


def test_a_file_url_is_the_local_directory(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/root"
    assert not fsio.is_remote(url) and fsio.is_remote("s3://bucket/prefix")
    with Location.here(url).active():
        inputs = write_input_shards(candidates(), 6, "t")
    assert Path(inputs[0].path).parent == tmp_path / "root" / "inputs" / "t"
    assert Path(inputs[0].path).is_file()


def test_an_unusable_storage_url_is_refused_before_any_work() -> None:
    with pytest.raises(ValueError, match="not usable here"):
        fsio.check("nosuchscheme://bucket/prefix")
    fsio.check("memory://fine")
    fsio.check("/a/local/dir")


def test_a_dataset_is_published_to_a_url_manifest_last(bucket: str) -> None:
    import json

    from tasks.store.publish_url import publish_to_url

    fs, root = fsio.filesystem(bucket)
    url = f"{bucket}/datasets/demo"
    rows = [{"id": "a", "messages": []}, {"id": "b", "messages": []}]
    files = publish_to_url(url, {"dataset.jsonl": rows, "old.json": {"v": 1}})
    assert files["dataset.jsonl"].rows == 2
    manifest = json.loads(fs.cat_file(f"{root}/datasets/demo/manifest.json"))
    assert set(manifest["files"]) == {"dataset.jsonl", "old.json"}
    text = fs.cat_file(f"{root}/datasets/demo/dataset.jsonl").decode()
    assert [json.loads(line)["id"] for line in text.splitlines()] == ["a", "b"]

    publish_to_url(url, {"dataset.jsonl": rows[:1], "funnel.json": {"kept": 1}})
    names = sorted(p.rsplit("/", 1)[1] for p in fs.find(f"{root}/datasets/demo"))
    assert names == ["dataset.jsonl", "funnel.json", "manifest.json"]  # old.json is gone
    assert not list((project_dir() / ".winnow").glob(".publish-*"))  # staging cleaned up


@pytest.mark.slow
def test_a_recipe_keeps_shards_and_publishes_behind_urls(
    tmp_path: Path, bucket: str, prefect_harness
) -> None:
    """The RAG QA recipe with storage and out both in memory://: gates, funnel, DuckDB and
    the catalog all work from the URLs, and nothing lands in the local shard root."""
    from flows.rag_qa import rag_qa
    from tests.recipes.test_rag_qa_flow import check_outcome, params, script
    from winnow.testing.llm_server import LLMTestServer

    with LLMTestServer(script()) as server:
        p = params(tmp_path, server.base_url, storage=bucket, out=f"{bucket}/out")
        summary = rag_qa(p)
    assert summary["kept"] == 3
    fs, root = fsio.filesystem(bucket)
    local = tmp_path / "downloaded"
    fs.get(f"{root}/out/", str(local), recursive=True)
    check_outcome(local)
    assert fs.find(f"{root}/shards/adherence") and fs.find(f"{root}/inputs/rag-qa")
    assert not (project_dir() / ".winnow" / "shards").exists()
    from tasks.store.catalog import Catalog

    registered = Catalog().stage_shards(summary["run_id"], "filter")
    assert registered and all(str(s.path).startswith(bucket) for s in registered)
    assert len(read_frame([s.path for s in registered])) == 3  # the catalog's paths read back
