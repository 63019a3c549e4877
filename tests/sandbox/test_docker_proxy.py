"""The narrowed Docker API (tasks/sandbox/proxy.py) the team stack's worker gets instead of
the engine's socket: the Docker backend works through it with every limit it has (the
hostile suite passes), and what would give the worker the host is refused with 403."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tasks.sandbox.base import Limits
from tasks.sandbox.image import IMAGE
from tasks.sandbox.proxy import DockerProxy, Request
from tasks.sandbox.proxy_policy import PROXY_LABEL, Ceilings, Refused, check_create


class Captured(Exception):
    """Raised by the capturing stand-in for the SDK's POST: the body was recorded."""


def backend_create_body(limits: Limits | None = None) -> dict[str, Any]:
    """The create body the real Docker backend sends, captured before it leaves the SDK
    (no engine needed: the SDK's JSON POST is replaced by a recorder)."""
    import docker

    from tasks.sandbox.docker_backend import DockerSandbox

    client = docker.DockerClient(base_url="unix:///nonexistent.sock", version="1.41")
    sent: dict[str, Any] = {}

    def record(url: str, data: dict, **_: Any) -> None:
        sent.update(data)
        raise Captured(url)

    client.api._post_json = record
    sandbox = DockerSandbox(client=client, build=False)
    with pytest.raises(Captured):
        sandbox._create(["python3", "main.py"], limits or Limits())
    return sent


@pytest.fixture(scope="module")
def body() -> dict[str, Any]:
    return backend_create_body()


def variant(body: dict[str, Any], **host: Any) -> dict[str, Any]:
    top = {k: v for k, v in host.items() if k[0].islower()}
    host = {k: v for k, v in host.items() if k[0].isupper()}
    out = {**body, "HostConfig": {**body["HostConfig"], **host}}
    for key, value in top.items():
        out[key.removeprefix("top_")] = value
    return out


def test_the_backends_own_create_is_allowed(body) -> None:
    check_create(body, Ceilings())
    big = backend_create_body(Limits(memory_mb=8192))
    with pytest.raises(Refused, match="Memory"):
        check_create(big, Ceilings())  # above the proxy's ceiling
    check_create(big, Ceilings(memory_mb=8192))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"Privileged": True}, "Privileged"),
        ({"Binds": ["/:/host"]}, "Binds"),
        ({"Mounts": [{"Type": "bind", "Source": "/", "Target": "/h"}]}, "Mounts"),
        ({"Devices": [{"PathOnHost": "/dev/sda"}]}, "Devices"),
        ({"CapAdd": ["SYS_ADMIN"]}, "CapAdd"),
        ({"CapDrop": []}, "capability"),
        ({"NetworkMode": "host"}, "network"),
        ({"NetworkMode": "bridge"}, "network"),
        ({"PidMode": "host"}, "PidMode"),
        ({"UsernsMode": "host"}, "UsernsMode"),
        ({"ReadonlyRootfs": False}, "read-only"),
        ({"SecurityOpt": ["no-new-privileges", "seccomp=unconfined"]}, "SecurityOpt"),
        ({"SecurityOpt": []}, "SecurityOpt"),
        ({"MaskedPaths": []}, "MaskedPaths"),
        ({"Memory": 0}, "Memory"),
        ({"MemorySwap": -1}, "MemorySwap"),
        ({"NanoCpus": 0}, "NanoCpus"),
        ({"PidsLimit": 0}, "PidsLimit"),
        ({"PidsLimit": -1}, "PidsLimit"),
        ({"Tmpfs": {"/etc": "size=1"}}, "tmpfs"),
        ({"Tmpfs": {"/work": "rw,exec"}}, "size"),
        ({"Runtime": "runsc-unconfined"}, "Runtime"),
        ({"LogConfig": {"Type": "gelf", "Config": {"gelf-address": "udp://x:1"}}}, "log"),
        ({"VolumesFrom": ["postgres"]}, "VolumesFrom"),
        ({"top_Image": "alpine:latest"}, "sandbox image"),
        ({"top_User": "root"}, "non-root"),
        ({"top_User": "0:0"}, "non-root"),
        ({"top_User": ""}, "non-root"),
        ({"top_Volumes": {"/data": {}}}, "Volumes"),
    ],
)
def test_a_create_without_the_sandboxs_limits_is_refused(body, change, reason) -> None:
    with pytest.raises(Refused, match=reason):
        check_create(variant(body, **change), Ceilings())


def proxy_request(method: str, path: str) -> Request:
    return Request(method=method, target=path, version="HTTP/1.1", headers=[])


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1.41/containers/abc/exec"),
        ("POST", "/v1.41/exec/abc/start"),
        ("POST", "/v1.41/images/create?fromImage=alpine"),
        ("POST", "/v1.41/build"),
        ("GET", "/v1.41/info"),
        ("GET", "/v1.41/images/json"),
        ("GET", "/v1.41/images/alpine:latest/json"),
        ("POST", "/v1.41/volumes/create"),
        ("GET", "/v1.41/containers/abc/archive?path=/"),
        ("PUT", "/v1.41/containers/abc/archive?path=/"),
        ("POST", "/v1.41/containers/abc/update"),
        ("GET", "/v1.41/containers/abc/attach/ws"),
        ("POST", "/v1.41/networks/create"),
        ("POST", "/v1.41/swarm/init"),
        ("POST", "/v1.41/plugins/pull"),
        ("POST", "/v1.41/session"),
        ("POST", "/v1.41/containers/abc%2Fexec"),
        ("POST", "/v1.41/containers/create/../../build"),
        ("POST", "//v1.41/build"),
        ("POST", "http://docker/v1.41/build"),
    ],
)
def test_everything_else_is_refused_before_the_engine_is_asked(method, path) -> None:
    proxy = DockerProxy("tcp://127.0.0.1:0", "unix:///nonexistent.sock")
    with pytest.raises(Refused, match="not part of the sandbox's API|paths are not allowed"):
        proxy.decide(proxy_request(method, path))


def test_the_list_of_containers_is_narrowed_to_the_proxys_own() -> None:
    import json
    from urllib.parse import parse_qs, urlsplit

    proxy = DockerProxy("tcp://127.0.0.1:0", "unix:///nonexistent.sock")
    target = '/v1.41/containers/json?all=1&filters={"label":["winnow.pid"]}'
    decided = proxy.decide(proxy_request("GET", target))
    filters = json.loads(parse_qs(urlsplit(decided.target).query)["filters"][0])
    assert filters["label"] == ["winnow.pid", f"{PROXY_LABEL}=1"]
    assert filters["ancestor"] == [IMAGE]


# -- against a real engine -------------------------------------------------------------


@pytest.fixture(scope="module")
def proxy(docker_engine: str, tmp_path_factory) -> Iterator[DockerProxy]:
    from tasks.sandbox.docker_backend import connect
    from tasks.sandbox.image import ensure_image

    ensure_image(connect(docker_engine))  # the proxy never builds images
    sock = tmp_path_factory.mktemp("proxy") / "d.sock"
    with DockerProxy(f"unix://{sock}", docker_engine) as running:
        yield running


@pytest.fixture(scope="module")
def proxied_sandbox(proxy: DockerProxy):
    from tasks.sandbox.docker_backend import DockerSandbox, connect

    return DockerSandbox(connect(proxy.address))


@pytest.mark.slow
def test_the_backend_runs_code_through_the_proxy(proxied_sandbox, proxy) -> None:
    code = "import os\nprint(os.getuid(), input())\n"
    verdict = proxied_sandbox.run({"main.py": code}, ["sh", "-c", "echo hi | python3 main.py"])
    assert verdict.passed, verdict
    assert verdict.stdout.strip() == "65534 hi"
    assert verdict.backend == "docker"


@pytest.mark.slow
def test_winnow_sandbox_hostile_passes_through_the_proxy(proxy, tmp_path) -> None:
    """The command a team runs in its worker, with DOCKER_HOST at the proxy as there."""
    import subprocess
    import sys

    from tasks.sandbox.hostile import HOSTILE_CASES

    before = len(proxy.refused)
    env = {**os.environ, "DOCKER_HOST": proxy.address, "WINNOW_PROJECT_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "winnow.cli", "sandbox", "hostile", "--backend", "docker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    n = len(HOSTILE_CASES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"docker: {n}/{n} contained" in result.stdout, result.stdout
    # nothing the backend needs was refused on the way
    assert proxy.refused[before:] == []


@pytest.mark.slow
def test_what_would_give_the_host_away_is_refused_by_the_engine_path(
    proxy: DockerProxy, docker_engine: str, body
) -> None:
    import docker
    import docker.errors

    through = docker.DockerClient(base_url=proxy.address, timeout=30)
    direct = docker.DockerClient(base_url=docker_engine, timeout=30)
    attacks = {
        "privileged": variant(body, Privileged=True),
        "bind-mount": variant(body, Binds=["/:/host:rw"]),
        "other-image": variant(body, top_Image="debian:bookworm-slim"),
        "host-network": variant(body, NetworkMode="host"),
    }
    for name, attack in attacks.items():
        with pytest.raises(docker.errors.APIError) as refused:
            through.api._result(
                through.api._post_json(through.api._url("/containers/create"), data=attack), True
            )
        assert refused.value.status_code == 403, name
        assert "winnow docker proxy" in str(refused.value), name
    with pytest.raises(docker.errors.APIError) as refused:
        through.images.pull("alpine", tag="latest")
    assert refused.value.status_code == 403
    # A container made on the engine directly (think: the team's database) is out of reach.
    bystander = direct.api.create_container(IMAGE, ["true"], network_disabled=True)["Id"]
    try:
        for act in (
            lambda: through.containers.get(bystander),
            lambda: through.api.remove_container(bystander, force=True),
            lambda: through.api.exec_create(bystander, ["true"]),
        ):
            with pytest.raises(docker.errors.APIError) as refused:
                act()
            assert refused.value.status_code == 403
        assert bystander not in {c.id for c in through.containers.list(all=True)}
        assert direct.containers.get(bystander).id == bystander  # still there
    finally:
        direct.api.remove_container(bystander, force=True)
    assert os.path.exists(proxy.address.removeprefix("unix://"))


@pytest.mark.slow
def test_the_command_compose_runs_serves_the_narrowed_api(docker_engine, body, tmp_path) -> None:
    """`winnow sandbox proxy --listen ... --engine ...`, as the docker-proxy service runs it."""
    import subprocess
    import sys
    import time

    import docker
    import docker.errors

    from tasks.sandbox.docker_backend import DockerSandbox, connect

    sock = tmp_path / "api.sock"
    command = [sys.executable, "-m", "winnow.cli", "sandbox", "proxy"]
    command += ["--listen", f"unix://{sock}", "--engine", docker_engine]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not sock.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
        assert sock.exists(), process.stdout.read() if process.poll() is not None else "no socket"
        verdict = DockerSandbox(connect(f"unix://{sock}")).run(
            {"main.py": "print(6 * 7)"}, ["python3", "main.py"]
        )
        assert verdict.passed and verdict.stdout.strip() == "42", verdict
        client = docker.DockerClient(base_url=f"unix://{sock}", timeout=30)
        with pytest.raises(docker.errors.APIError) as refused:
            client.containers.run(IMAGE, ["true"], privileged=True, remove=True)
        assert refused.value.status_code == 403
    finally:
        process.terminate()
        process.wait(30)
