"""Where a recipe's shards run, chosen by parameters (so a deployment run can choose too).

``threads`` (the default) runs shard tasks in threads of the flow's process, through the
flow's own task runner. ``dask`` and ``ray`` send them to a cluster through Prefect's
``DaskTaskRunner`` / ``RayTaskRunner``: an existing one at an address, or a temporary
local one that lives as long as the run. Either way the flow's process stays the only
catalog writer: workers write Parquet shards and return references to them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tasks.llm.base import ConfigError
from tasks.pipeline.params import RuntimeParams

RAY_HINT = "pip install 'winnow[ray]'"


def make_task_runner(runtime: RuntimeParams) -> Any | None:
    """A Prefect task runner for ``runtime``, not started yet; ``None`` for threads."""
    if runtime.task_runner == "threads":
        return None
    if runtime.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if runtime.dask_address:
            return DaskTaskRunner(address=runtime.dask_address)
        cluster = {"n_workers": runtime.dask_workers} if runtime.dask_workers else {}
        return DaskTaskRunner(cluster_kwargs=cluster)  # a LocalCluster for this run
    try:
        from prefect_ray import RayTaskRunner
    except ImportError as exc:
        raise ConfigError(
            f"task_runner=ray needs prefect-ray, which is not installed: {RAY_HINT} ({exc})"
        ) from None
    return RayTaskRunner(address=runtime.ray_address) if runtime.ray_address else RayTaskRunner()


@contextmanager
def shared_api() -> Iterator[None]:
    """Name the flow's Prefect API explicitly while shards are submitted to a cluster.

    With no ``PREFECT_API_URL``, this process talks to a temporary server it started
    itself; each worker process would then start one of its own (seconds each, and its
    task runs out of the flow's sight). Prefect sends the settings in force at submit
    time along with each task, so submitting under the address of this process's
    server makes the workers report there. (Workers on other machines can't reach it:
    give them a real server with ``PREFECT_API_URL``.)"""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    if not server.running:
        yield
        return
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        yield
