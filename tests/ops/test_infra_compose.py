"""infra/compose.yaml cannot be started here (no image registry), so its wiring is
checked: the services a team needs, the server on PostgreSQL, the worker on the work
pool that infra/prefect.yaml deploys to, Dockerfiles that exist, no key written in the
file; read as an attacker would: no port on every interface by default, no default
password or auth string, the auth string on the server and every client, no raw Docker
socket in the worker; and ``docker compose config`` (or docker-compose) when one is
installed: it refuses to start without the two secrets and publishes on 127.0.0.1."""

from __future__ import annotations

import os
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


DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}")
REQUIRED = re.compile(r"\$\{(\w+):\?[^}]*\}")


def by_default(text: str) -> str:
    """``text`` as compose reads it with nothing set: defaults in, required values
    marked."""
    return REQUIRED.sub(r"<\1>", DEFAULTED.sub(r"\2", text))


def test_no_port_is_published_on_every_interface_by_default(compose) -> None:
    published = [
        (name, by_default(str(port)))
        for name, service in compose["services"].items()
        for port in service.get("ports") or []
    ]
    assert published, "the UI port is published"
    for name, port in published:
        assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    for service in compose["services"].values():
        assert service.get("network_mode") != "host"


def test_no_default_password_or_auth_string_remains() -> None:
    text = COMPOSE.read_text()
    for name, default in DEFAULTED.findall(text):
        assert not re.search(r"PASSWORD|AUTH|SECRET|KEY", name) or default == "", name
    assert "prefect:prefect@" not in by_default(text)
    required = set(REQUIRED.findall(text))
    assert {"POSTGRES_PASSWORD", "PREFECT_API_AUTH_STRING"} <= required


def test_the_auth_string_reaches_the_server_and_every_client(compose) -> None:
    services = compose["services"]
    server = services["prefect-server"]["environment"]
    assert REQUIRED.fullmatch(server["PREFECT_SERVER_API_AUTH_STRING"])
    for name in ("deploy", "worker"):
        env = services[name]["environment"]
        assert env["PREFECT_API_AUTH_STRING"] == server["PREFECT_SERVER_API_AUTH_STRING"], name
    # the healthcheck asks /api/health, which Prefect leaves open to probes
    assert "/api/health" in str(services["prefect-server"]["healthcheck"]["test"])


def test_the_worker_has_no_raw_docker_socket(compose) -> None:
    services = compose["services"]
    worker = services["worker"]
    mounts = [str(v) for v in worker.get("volumes") or []]
    assert not [m for m in mounts if "docker.sock" in m.split(":")[0]], mounts
    assert not worker.get("privileged")
    holders = {
        name
        for name, service in services.items()
        if any("/var/run/docker.sock" in str(v) for v in service.get("volumes") or [])
    }
    assert holders == {"docker-proxy"}
    proxy = services["docker-proxy"]
    command = command_text(proxy)
    assert command.startswith("winnow sandbox proxy")
    listen = re.search(r"--listen\s+(\S+)", command).group(1)
    assert worker["environment"]["DOCKER_HOST"] == listen
    # the proxy's socket is in a volume the worker and the proxy share, and no one else
    folder = listen.removeprefix("unix://").rsplit("/", 1)[0]
    volume = next(v.split(":")[0] for v in proxy["volumes"] if v.endswith(":" + folder))
    sharing = {
        name
        for name, service in services.items()
        if any(str(v).split(":")[0] == volume for v in service.get("volumes") or [])
    }
    assert sharing == {"docker-proxy", "worker"}
    assert proxy.get("network_mode") == "none" and proxy.get("read_only") is True
    assert "ports" not in proxy


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
            if any(word in key for word in ("KEY", "PASSWORD", "SECRET", "AUTH")):
                assert str(value).startswith("${"), f"{name}.{key} must come from the environment"


def compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def compose_config(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed here")
    env_file = tmp_path / "team.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    clean = {
        k: v for k, v in os.environ.items() if k not in SECRETS and k != "PREFECT_BIND_ADDRESS"
    }
    return subprocess.run(
        [*command, "-f", str(COMPOSE), "--env-file", str(env_file), "config"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=clean,
    )


SECRETS = ("PREFECT_API_AUTH_STRING", "POSTGRES_PASSWORD")


def test_compose_refuses_to_start_without_the_secrets(tmp_path: Path) -> None:
    full = {"PREFECT_API_AUTH_STRING": "team:s3cret-long", "POSTGRES_PASSWORD": "pg-s3cret"}
    for missing in SECRETS:
        result = compose_config(tmp_path, {k: v for k, v in full.items() if k != missing})
        assert result.returncode != 0, f"compose accepted the file without {missing}"
        assert missing in result.stderr


def test_compose_itself_accepts_the_file_with_them(tmp_path: Path) -> None:
    env = {"PREFECT_API_AUTH_STRING": "team:s3cret-long", "POSTGRES_PASSWORD": "pg-s3cret"}
    result = compose_config(tmp_path, env)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    server = services["prefect-server"]
    assert server["environment"]["PREFECT_SERVER_API_AUTH_STRING"] == "team:s3cret-long"
    assert services["worker"]["environment"]["PREFECT_API_AUTH_STRING"] == "team:s3cret-long"
    assert "pg-s3cret@postgres" in server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    (port,) = server["ports"]
    host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
    assert host_ip == "127.0.0.1", port
    # a team that wants the network says so
    opened = compose_config(tmp_path, {**env, "PREFECT_BIND_ADDRESS": "0.0.0.0"})
    (port,) = yaml.safe_load(opened.stdout)["services"]["prefect-server"]["ports"]
    host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
    assert host_ip == "0.0.0.0"
