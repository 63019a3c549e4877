"""The live progress artifact of a run watched in the Prefect UI: created when the run
starts, updated from its own thread no more often than ``every_s`` and only when
something moved (never once a row), and a last time saying how the run ended. Prefect's
two artifact calls are replaced by a recording double here; the real ones are exercised
by tests/recipes/test_preview.py against a Prefect server."""

from __future__ import annotations

import time
import uuid

import prefect.artifacts
import pytest

from tasks.pipeline import artifacts


def test_updates_are_throttled_and_the_last_one_says_how_it_ended(monkeypatch) -> None:
    created: list[dict] = []
    updates: list[dict] = []
    monkeypatch.setattr(artifacts, "flow_run_id", lambda: "a-flow-run")
    monkeypatch.setattr(
        prefect.artifacts,
        "create_progress_artifact",
        lambda **kw: created.append(kw) or uuid.uuid4(),
    )
    monkeypatch.setattr(
        prefect.artifacts,
        "update_progress_artifact",
        lambda artifact_id, **kw: updates.append(kw) or artifact_id,
    )
    live = artifacts.LiveProgress("code-sft", "run-1", every_s=0.2).open()
    assert created and created[0]["key"] == "code-sft-progress"
    live.start("solutions", 1000)
    began = time.monotonic()
    for _ in range(1000):  # a thousand rows in about a second
        live.advance("solutions")
        time.sleep(0.001)
    live.kept("solutions", 600)
    live.spent(0.5)
    elapsed = time.monotonic() - began
    deadline = time.monotonic() + 10
    while live._written != live.changed and time.monotonic() < deadline:
        time.sleep(0.05)  # the writer catches up with the last change...
    idle = len(updates)
    time.sleep(0.5)  # ...and, nothing moving now, writes no more
    assert len(updates) == idle
    assert 1 <= idle <= elapsed / 0.2 + 3  # a handful, not a thousand
    live.finish("solutions")
    live.close("completed")
    last = updates[-1]
    assert last["progress"] == 100.0
    assert "**completed**" in last["description"]
    assert "| solutions | 1000/1000 |" in last["description"]
    assert "kept so far: 600" in last["description"] and "$0.5000" in last["description"]


def test_outside_a_flow_run_it_only_counts(monkeypatch) -> None:
    monkeypatch.setattr(artifacts, "flow_run_id", lambda: None)
    live = artifacts.LiveProgress("code-sft", "run-2").open()
    live.start("problems", 2)
    live.advance("problems", 2)
    live.close("completed")
    assert live.artifact_id is None and live.writes == 0
    assert live.snapshot()["fraction_done"] == 1.0


@pytest.mark.slow
def test_the_writer_thread_updates_a_real_artifact(prefect_harness) -> None:
    """Against a Prefect server: the updates made from the writer's own thread (not the
    flow's) reach the run's artifact."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    @flow
    def watched() -> int:
        live = artifacts.LiveProgress("live-test", "run-3", every_s=0.1).open()
        live.start("stage", 10)
        for _ in range(10):
            live.advance("stage")
            time.sleep(0.1)
        writes_while_running = live.writes
        live.finish("stage")
        live.close("completed")
        return writes_while_running

    assert watched() >= 3  # the thread wrote as the rows came, before the last write
    with get_client(sync_client=True) as client:
        (found,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["live-test-progress"]))
        )
    assert found.type == "progress" and found.data == 100.0
    assert "| stage | 10/10 |" in found.description
