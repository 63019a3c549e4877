"""Choosing where shards run by parameters: the same fields on every recipe, set from
``winnow run --set`` as from a deployment's parameters."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from flows.registry import RECIPES
from tasks.core.paths import Location, project_dir, shard_root, state_dir
from tasks.llm.base import ConfigError
from tasks.pipeline.executors import RAY_HINT, make_task_runner
from tasks.pipeline.params import RuntimeParams, runtime_of
from winnow.commands.run import build_params, parse_sets


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_takes_the_runner_from_its_parameters(name: str) -> None:
    from prefect_dask import DaskTaskRunner

    given = parse_sets(["task_runner=dask", "dask_address=tcp://10.0.0.5:8786"])
    params = build_params(RECIPES[name].params_model(), given)
    runner = make_task_runner(runtime_of(params))
    assert isinstance(runner, DaskTaskRunner) and runner.address == "tcp://10.0.0.5:8786"
    # a deployment run gets the same from its JSON parameters
    again = RECIPES[name].params_model().model_validate(params.model_dump(mode="json"))
    assert runtime_of(again) == runtime_of(params)


def test_threads_is_the_default_and_uses_the_flows_own_runner() -> None:
    assert make_task_runner(RuntimeParams()) is None
    assert runtime_of(build_params(RECIPES["rag-qa"].params_model(), {})).task_runner == "threads"


def test_without_an_address_dask_gets_a_temporary_local_cluster() -> None:
    runner = make_task_runner(RuntimeParams(task_runner="dask", dask_workers=2))
    assert runner.address is None and runner.cluster_kwargs == {"n_workers": 2}
    assert make_task_runner(RuntimeParams(task_runner="dask")).cluster_kwargs == {}


def test_an_unknown_runner_is_refused() -> None:
    with pytest.raises(ValidationError):
        RuntimeParams(task_runner="spark")


def test_ray_without_prefect_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prefect_ray", None)  # as if not installed
    with pytest.raises(ConfigError) as info:
        make_task_runner(RuntimeParams(task_runner="ray"))
    assert RAY_HINT in str(info.value) and "winnow[ray]" in RAY_HINT


def test_a_location_points_a_task_at_another_project(tmp_path: Path) -> None:
    mine = project_dir()
    other = Location(project=str(tmp_path / "other"), storage=None)
    with other.active():
        assert project_dir() == tmp_path / "other"
        assert shard_root() == str(tmp_path / "other" / ".winnow")
        with Location.here("memory://b").active():
            assert shard_root() == "memory://b" and project_dir() == tmp_path / "other"
    assert project_dir() == mine and shard_root() == str(state_dir())


def test_the_generate_flow_takes_the_same_parameters() -> None:
    from tasks.recipes.generate.recipe import GenerateParams

    params = GenerateParams(
        input="in.jsonl", out="out.jsonl", task_runner="dask", storage="s3://b/p"
    )
    runtime = RuntimeParams(task_runner="dask", storage="s3://b/p", shard_size=64)
    assert runtime_of(params) == runtime
