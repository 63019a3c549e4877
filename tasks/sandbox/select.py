"""Pick a sandbox backend: Docker when an engine answers, else bubblewrap."""

from __future__ import annotations

from tasks.sandbox.base import Sandbox, SandboxKind, SandboxUnavailable
from tasks.sandbox.bwrap import INSTALL_HINT as BWRAP_HINT
from tasks.sandbox.docker_backend import INSTALL_HINT as DOCKER_HINT

NONE_AVAILABLE = (
    "no sandbox can run generated code here. Install one: "
    f"bubblewrap ({BWRAP_HINT}), or Docker ({DOCKER_HINT})."
)


def get_docker() -> Sandbox:
    from tasks.sandbox.docker_backend import DockerSandbox

    return DockerSandbox()


def get_bwrap() -> Sandbox:
    from tasks.sandbox.bwrap import BwrapSandbox, probe

    why = probe()
    if why:
        raise SandboxUnavailable(why)
    return BwrapSandbox()


def get_sandbox(kind: SandboxKind = "auto") -> Sandbox:
    """The sandbox for ``kind``; raises SandboxUnavailable saying how to install one.

    ``auto`` prefers Docker (stronger isolation: cgroups, its own kernel-level view) when an
    engine answers at ``DOCKER_HOST`` or ``/var/run/docker.sock``; otherwise bubblewrap.
    """
    if kind == "docker":
        return get_docker()
    if kind == "bwrap":
        return get_bwrap()
    if kind != "auto":
        raise ValueError(f"unknown sandbox kind {kind!r}: auto, docker or bwrap")
    reasons = []
    from tasks.sandbox.docker_backend import engine_address

    if engine_address():
        try:
            return get_docker()
        except SandboxUnavailable as exc:
            reasons.append(f"docker: {exc}")
    try:
        return get_bwrap()
    except SandboxUnavailable as exc:
        reasons.append(f"bwrap: {exc}")
    raise SandboxUnavailable(NONE_AVAILABLE + (" (" + "; ".join(reasons) + ")"))
