"""infra/prefect.yaml: one deployment per recipe, importable entrypoints, parameters that
the recipe's model accepts, valid cron schedules, and a parameter schema that gives the
UI a form with every field's default and description."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flows.registry import RECIPES
from tasks.core.paths import SOURCE_ROOT
from winnow.serving.declared import DEFAULT_FILE, load, to_runner_deployment


@pytest.fixture(scope="module")
def declared():
    return load(DEFAULT_FILE)


def test_every_recipe_is_declared_once(declared) -> None:
    names = [d.name for d in declared.deployments]
    assert sorted(names) == sorted(RECIPES), "prefect.yaml must list exactly the registry"
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_entrypoint_is_the_registry_flow(declared, name: str) -> None:
    entry, recipe = declared.get(name), RECIPES[name]
    path = entry.entrypoint.partition(":")[0]
    assert (SOURCE_ROOT / path).is_file(), f"{entry.entrypoint}: no such file"
    assert entry.module == recipe.module
    assert entry.load_flow() is recipe.flow()
    # the declared default parameters are valid for the recipe's model
    assert set(entry.parameters) <= {"params"}
    recipe.params_model().model_validate(entry.parameters.get("params", {}))


def test_one_work_pool_for_all(declared) -> None:
    pools = {d.work_pool.name if d.work_pool else None for d in declared.deployments}
    assert len(pools) == 1 and None not in pools


def test_schedules_are_valid_cron(declared) -> None:
    from prefect.client.schemas.schedules import CronSchedule

    scheduled = [d for d in declared.deployments if d.schedules]
    assert scheduled, "at least one recipe runs on a schedule"
    for entry in scheduled:
        for s in entry.schedules:
            CronSchedule(cron=s.cron, timezone=s.timezone)  # raises on a bad expression


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_parameter_is_described(name: str) -> None:
    model = RECIPES[name].params_model()
    missing = [f for f, field in model.model_fields.items() if not field.description]
    assert not missing, f"{name}: parameters without a description for the UI form: {missing}"


def test_parameter_schema_is_a_form_with_defaults_and_descriptions(declared) -> None:
    entry = declared.get("rag-qa")
    deployment = to_runner_deployment(entry)
    schema = deployment._parameter_openapi_schema.model_dump()
    model = RECIPES["rag-qa"].params_model()
    definition = schema["definitions"][model.__name__]
    assert list(schema["properties"]) == ["params"]
    for field_name, field in model.model_fields.items():
        prop = definition["properties"][field_name]
        assert field.description in prop.get("description", ""), field_name  # after its group
        assert prop.get("title") and prop["title"] != field_name, field_name
        if field.default is not None:
            assert prop.get("default") == field.default, field_name
    assert deployment.parameters == entry.parameters
    crons = [s.schedule.cron for s in deployment.schedules]
    assert crons == [s.cron for s in entry.schedules]
    assert all(s.active for s in deployment.schedules)


def test_schedules_can_be_paused_and_added(declared) -> None:
    paused = to_runner_deployment(declared.get("rag-qa"), schedules=False)
    assert paused.schedules and not any(s.active for s in paused.schedules)
    extra = to_runner_deployment(declared.get("code-sft"), extra_cron="*/5 * * * *")
    assert [(s.schedule.cron, s.active) for s in extra.schedules] == [("*/5 * * * *", True)]


def test_an_unknown_name_is_refused(declared) -> None:
    with pytest.raises(KeyError, match="declared: code-sft"):
        declared.get("nope")


def test_the_file_is_the_one_prefect_deploy_reads() -> None:
    assert DEFAULT_FILE == Path(SOURCE_ROOT, "infra", "prefect.yaml")
    assert "prefect deploy --prefect-file infra/prefect.yaml" in DEFAULT_FILE.read_text()


@pytest.mark.slow
def test_prefect_deploy_registers_the_same_deployments(prefect_harness, tmp_path) -> None:
    """The teams' path: `prefect deploy --prefect-file infra/prefect.yaml --all` against a
    server with the work pool, without a terminal, gives one deployment per recipe on
    the pool, with the declared parameters, schedules and pull step."""
    import os
    import subprocess
    import sys

    import httpx
    from prefect.settings import PREFECT_API_URL

    api = PREFECT_API_URL.value()
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_CLI_PROMPT": "false"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    declared = load(DEFAULT_FILE)
    pool = declared.deployments[0].work_pool.name
    for command in (
        ["work-pool", "create", pool, "--type", "process", "--overwrite"],
        ["deploy", "--prefect-file", "infra/prefect.yaml", "--all"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "prefect", *command],
            cwd=SOURCE_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    found = httpx.post(f"{api}/deployments/filter", json={}, timeout=30).json()
    by_name = {d["name"]: d for d in found if d["work_pool_name"] == pool}
    assert set(by_name) == set(RECIPES)
    for entry in declared.deployments:
        d = by_name[entry.name]
        assert d["entrypoint"] == entry.entrypoint
        assert d["parameters"] == entry.parameters
        assert [s["schedule"]["cron"] for s in d["schedules"]] == [s.cron for s in entry.schedules]
        assert d["pull_steps"] == yaml.safe_load(DEFAULT_FILE.read_text())["pull"]
