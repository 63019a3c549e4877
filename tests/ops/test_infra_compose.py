"""infra/compose.yaml cannot be started here (no image registry), so its wiring is
checked: the services a team needs, the server on PostgreSQL, the worker on the work
pool that infra/prefect.yaml deploys to, Dockerfiles that exist, no key written in the
file; and ``docker compose config`` (or docker-compose) when one is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tasks.core.paths import SOURCE_ROOT
from winnow.serving.declared import load

INFRA = SOURCE_ROOT / "infra"
COMPOSE = INFRA / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def command_text(service: dict) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else str(command)


def pool_of(service: dict) -> str | None:
    match = re.search(r"--pool\s+(\S+)", command_text(service))
    return match.group(1) if match else None


def test_the_services_a_team_needs(compose) -> None:
    assert {"postgres", "prefect-server", "worker", "sandbox", "deploy"} <= set(compose["services"])


def test_the_server_uses_postgres(compose) -> None:
    server = compose["services"]["prefect-server"]
    url = server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert url.startswith("postgresql+asyncpg://") and "@postgres:5432/" in url
    assert "postgres" in server["depends_on"]
    assert "prefect server start" in command_text(server)
    assert "4200" in str(server["ports"])


def test_the_worker_serves_the_pool_prefect_yaml_deploys_to(compose) -> None:
    pools = {d.work_pool.name for d in load().deployments if d.work_pool}
    assert len(pools) == 1
    (pool,) = pools
    worker = compose["services"]["worker"]
    assert "prefect worker start" in command_text(worker)
    assert pool_of(worker) == pool
    assert "--type process" in command_text(worker)
    assert worker["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    deploy = command_text(compose["services"]["deploy"])
    assert f"work-pool create {pool} --type process" in deploy
    assert "prefect deploy --prefect-file infra/prefect.yaml --all" in deploy


def test_images_are_built_from_dockerfiles_that_exist(compose) -> None:
    built = {n: s["build"] for n, s in compose["services"].items() if "build" in s}
    assert {"prefect-server", "worker", "sandbox"} <= set(built)
    for name, build in built.items():
        context = (COMPOSE.parent / build["context"]).resolve()
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
        assert dockerfile.read_text().lstrip().startswith("#")  # says what it is for
    sandbox = compose["services"]["sandbox"]
    from tasks.sandbox.image import IMAGE

    assert sandbox["image"] == IMAGE  # the tag the Docker sandbox backend runs
    assert sandbox.get("network_mode") == "none"


def test_the_project_image_holds_what_the_pull_step_expects() -> None:
    dockerfile = (INFRA / "worker" / "Dockerfile").read_text()
    declared = yaml.safe_load((INFRA / "prefect.yaml").read_text())
    (step,) = declared["pull"]
    directory = step["prefect.deployments.steps.set_working_directory"]["directory"]
    assert f"WORKDIR {directory}" in dockerfile
    for folder in ("flows", "tasks", "winnow", "prompts", "expectations", "infra"):
        assert f"COPY {folder} " in dockerfile, folder


def test_no_secret_is_written_in_the_file(compose) -> None:
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        for key, value in env.items():
            if "KEY" in key or "PASSWORD" in key or "SECRET" in key:
                assert str(value).startswith("${"), f"{name}.{key} must come from the environment"


def compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_itself_accepts_the_file(tmp_path: Path) -> None:
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed here")
    result = subprocess.run(
        [*command, "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
