"""Sandbox fixtures: a bubblewrap sandbox, a Docker sandbox (own engine if need be), and
``any_sandbox`` parametrized over both so suites run on every backend.

Docker: an engine that answers (DOCKER_HOST or /var/run/docker.sock) is used as is. Else,
as root with dockerd installed (CI), a private dockerd is started for the session with the
three network flags, the sandbox image is built if missing (kept in the cache dir's data
root, so only the first run pays ~45 s) and dockerd is stopped at the end. Tests skip only
when a backend truly cannot exist here, and say why.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tasks.sandbox.base import Sandbox, SandboxUnavailable

BACKENDS = ("bwrap", "docker")


@pytest.fixture(scope="session")
def bwrap_sandbox() -> Sandbox:
    from tasks.sandbox.bwrap import BwrapSandbox, probe

    why = probe()
    if why:
        pytest.skip(f"bubblewrap unusable here: {why}")
    return BwrapSandbox()


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[str]:
    """Address of a Docker engine for the session, started privately if needed."""
    from tasks.sandbox.docker_backend import engine_address, probe
    from tasks.sandbox.engine import PrivateDockerd, can_start_private

    address = engine_address()
    if address and probe(address) is None:
        yield address
        return
    why = can_start_private()
    if why:
        pytest.skip(f"no Docker engine answers and none can be started: {why}")
    engine = PrivateDockerd()
    try:
        engine.start()
    except SandboxUnavailable as exc:
        pytest.fail(f"could not start a private dockerd: {exc}")
    try:
        yield engine.address
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def docker_sandbox(docker_engine: str) -> Sandbox:
    from tasks.sandbox.docker_backend import DockerSandbox, connect

    return DockerSandbox(connect(docker_engine))  # builds the image when missing


@pytest.fixture(params=BACKENDS)
def any_sandbox(request: pytest.FixtureRequest) -> Sandbox:
    """Each backend in turn; use with ``@pytest.mark.slow``."""
    return request.getfixturevalue(f"{request.param}_sandbox")
