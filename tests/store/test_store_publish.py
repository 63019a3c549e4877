"""Atomic dataset publishing: a reader sees the old version or the new one, never half."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tasks.core.records import Rejection
from tasks.store import publish as publish_module
from tasks.store.publish import publish, read_manifest, recover, write_jsonl_atomic
from tasks.store.shards import iter_shards, read_shard

ROOT = Path(__file__).resolve().parents[2]


def _rows(n: int, tag: str = "v1") -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {"id": i, "tag": tag, "messages": [{"role": "user", "content": f"q{i}"}]}


def _siblings(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir())


def test_publish_writes_every_kind_of_file(tmp_path: Path) -> None:
    out = tmp_path / "datasets" / "run1"

    def readme(path: Path) -> None:
        path.write_text("# run1\n")

    result = publish(
        out,
        {
            "dataset.jsonl": _rows(3),
            "dataset.parquet": _rows(3),
            "rejected.jsonl": [Rejection(record_id="x", run_id="r", stage="s", reason="lint")],
            "funnel.json": [{"stage": "generate", "n_in": 3, "n_out": 3, "n_rejected": 0}],
            "README.md": readme,
            "notes/raw.txt": b"bytes",
        },
        manifest={"run_id": "r"},
    )
    assert result.path == out
    lines = (out / "dataset.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == list(_rows(3))
    assert read_shard(out / "dataset.parquet") == list(_rows(3))
    assert json.loads((out / "rejected.jsonl").read_text())["reason"] == "lint"
    assert json.loads((out / "funnel.json").read_text())[0]["n_out"] == 3
    assert (out / "notes" / "raw.txt").read_bytes() == b"bytes"
    manifest = read_manifest(out)
    assert manifest["run_id"] == "r"
    assert manifest["files"]["dataset.jsonl"]["rows"] == 3
    assert manifest["files"]["dataset.parquet"]["rows"] == 3
    assert manifest["files"]["README.md"]["rows"] is None
    assert len(manifest["files"]["dataset.jsonl"]["sha256"]) == 64
    assert _siblings(out) == ["run1"]  # no temp or aside directories left


def test_republish_replaces_the_whole_directory(tmp_path: Path) -> None:
    out = tmp_path / "ds" / "out"
    publish(out, {"dataset.jsonl": _rows(2), "stale.txt": "old"})
    publish(out, {"dataset.jsonl": _rows(5, "v2")})
    assert not (out / "stale.txt").exists()
    assert len((out / "dataset.jsonl").read_text().splitlines()) == 5
    assert _siblings(out) == ["out"]


def test_a_failure_mid_publish_keeps_the_previous_version(tmp_path: Path) -> None:
    out = tmp_path / "ds" / "out"
    publish(out, {"dataset.jsonl": _rows(2)})
    before = (out / "dataset.jsonl").read_text()

    def exploding() -> Iterator[dict[str, Any]]:
        yield from _rows(1000, "v2")
        raise RuntimeError("provider died")

    with pytest.raises(RuntimeError, match="provider died"):
        publish(out, {"dataset.jsonl": _rows(10, "v2"), "dataset.parquet": exploding()})
    assert (out / "dataset.jsonl").read_text() == before
    assert _siblings(out) == ["out"]
    with pytest.raises(ValueError, match="bad file name"):
        publish(out, {"../escape.txt": "x"})
    with pytest.raises(TypeError, match="don't know how"):
        publish(out, {"data.bin": 42})  # type: ignore[dict-item]
    assert (out / "dataset.jsonl").read_text() == before


KILLED = """
import os, sys
from tasks.store.publish import publish

def rows():
    for i in range(5000):
        if i == 2500:
            os._exit(9)  # a kill -9 halfway through the dataset
        yield {"id": i, "tag": "v2"}

publish(sys.argv[1], {"dataset.jsonl": rows()})
"""


def test_a_killed_process_never_leaves_half_a_dataset(tmp_path: Path) -> None:
    out = tmp_path / "ds" / "out"
    publish(out, {"dataset.jsonl": _rows(3)})
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED), str(out)], cwd=ROOT, timeout=120
    )
    assert proc.returncode == 9
    assert [json.loads(x)["tag"] for x in (out / "dataset.jsonl").read_text().splitlines()] == [
        "v1"
    ] * 3
    leftovers = [n for n in _siblings(out) if n != "out"]
    assert leftovers and all(".tmp-" in n for n in leftovers)  # the dead process's temp dir
    publish(out, {"dataset.jsonl": _rows(1, "v3")})  # the next publish cleans it up
    assert _siblings(out) == ["out"]
    # A first publish that dies leaves nothing at the target at all.
    fresh = tmp_path / "ds" / "fresh"
    died = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLED), str(fresh)], cwd=ROOT)
    assert died.returncode == 9
    assert not fresh.exists()


def test_crash_between_the_two_renames_is_recovered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the atomic exchange isn't available, the fallback swap can be interrupted."""
    out = tmp_path / "ds" / "out"
    publish(out, {"dataset.jsonl": _rows(2)})
    monkeypatch.setattr(publish_module, "_exchange", lambda a, b: False)
    real_rename = os.rename
    calls: list[tuple[str, str]] = []

    def crash_on_second(src: Any, dst: Any) -> None:
        calls.append((str(src), str(dst)))
        if len(calls) == 2:
            raise KeyboardInterrupt("power cut")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        publish(out, {"dataset.jsonl": _rows(7, "v2")})
    monkeypatch.setattr(os, "rename", real_rename)
    assert not out.exists()  # the window: previous version aside, new one discarded
    recover(out)
    assert len((out / "dataset.jsonl").read_text().splitlines()) == 2
    publish(out, {"dataset.jsonl": _rows(7, "v2")})  # the fallback path works end to end
    assert len((out / "dataset.jsonl").read_text().splitlines()) == 7
    assert _siblings(out) == ["out"]


def test_exchange_is_atomic_on_this_system(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    (b / "x").write_text("b")
    if not publish_module._exchange(a, b):
        pytest.skip("renameat2(RENAME_EXCHANGE) not supported here: fallback path is tested")
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"


def test_write_jsonl_atomic(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "rows.jsonl"
    assert write_jsonl_atomic(path, _rows(4)) == 4
    assert len(path.read_text().splitlines()) == 4

    def broken() -> Iterator[dict[str, Any]]:
        yield {"a": 1}
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_jsonl_atomic(path, broken())
    assert len(path.read_text().splitlines()) == 4
    assert sorted(p.name for p in path.parent.iterdir()) == ["rows.jsonl"]
    assert write_jsonl_atomic(tmp_path / "empty.jsonl", []) == 0
    assert (tmp_path / "empty.jsonl").read_text() == ""


def test_publish_and_read_back_in_flat_memory(tmp_path: Path) -> None:
    """Rows stream through: peak Python memory stays far below the dataset's size."""

    def rows(n: int) -> Iterator[dict[str, Any]]:
        for i in range(n):
            yield {"id": i, "text": "x" * 100 + str(i), "meta": {"i": i, "tags": ["a", "b"]}}

    n = 20_000
    out = tmp_path / "ds" / "big"
    publish(tmp_path / "ds" / "warm", {"d.jsonl": rows(5), "d.parquet": rows(5)})  # imports
    tracemalloc.start()
    try:
        everything = list(rows(n))
        _, materialised = tracemalloc.get_traced_memory()
        del everything
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        publish(out, {"dataset.jsonl": rows(n), "dataset.parquet": rows(n)})
        count = sum(1 for _ in iter_shards([out / "dataset.parquet"]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n
    assert peak - base < materialised / 3, (peak - base, materialised)
