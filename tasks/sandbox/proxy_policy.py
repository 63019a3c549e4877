"""What the narrowed Docker API lets a worker do: the rules, apart from the plumbing.

The worker of a team stack (infra/compose.yaml) starts sandbox containers through
:mod:`tasks.sandbox.proxy`, never through the engine's own socket. A request is allowed
only when it is one the Docker backend (:mod:`tasks.sandbox.docker_backend`) makes:
ping and version, the sandbox image's inspect, the list of its own containers, and the
create/start/attach/wait/kill/logs/inspect/remove of containers of the sandbox image.

A create must ask for every limit the backend sets: the sandbox image, no network, a
read-only root, no capabilities and ``no-new-privileges``, a non-root user, memory (no
swap beyond it), CPU and process caps within the proxy's ceilings, only the two tmpfs
mounts, and nothing that reaches the host (binds, mounts, devices, volumes, host
namespaces, another runtime). Anything the backend does not send must be absent or
empty. Every container created through the proxy gets :data:`PROXY_LABEL`; a container
without it (the team's database, anything else on the engine) is out of reach.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, Field

from tasks.sandbox.image import IMAGE

PROXY_LABEL = "winnow.sandbox-proxy"
TMPFS_TARGETS = frozenset({"/work", "/tmp"})
LOG_DRIVERS = frozenset({"", "none", "json-file", "local"})
ULIMITS = frozenset({"cpu", "fsize", "core", "nofile", "nproc"})
NO_NEW_PRIVILEGES = frozenset({"no-new-privileges", "no-new-privileges:true"})
# Keys the backend sends in a create; any other key must be absent or empty.
CONFIG_KEYS = frozenset(
    {
        "Image",
        "Cmd",
        "User",
        "Env",
        "Labels",
        "HostConfig",
        "NetworkDisabled",
        "OpenStdin",
        "StdinOnce",
        "AttachStdin",
        "AttachStdout",
        "AttachStderr",
        "Tty",
        "Hostname",
        "Domainname",
        "WorkingDir",
        "StopSignal",
    }
)
HOST_CONFIG_KEYS = frozenset(
    {
        "NetworkMode",
        "ReadonlyRootfs",
        "Init",
        "Memory",
        "MemorySwap",
        "NanoCpus",
        "PidsLimit",
        "CapDrop",
        "SecurityOpt",
        "Ulimits",
        "Tmpfs",
        "LogConfig",
    }
)
# Empty is not harmless for these: an empty list unmasks /proc and /sys paths.
MUST_BE_ABSENT = frozenset({"MaskedPaths", "ReadonlyPaths"})
CONTAINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class Ceilings(BaseModel):
    """The most one sandbox container may ask for."""

    image: str = Field(IMAGE, description="the only image containers may be created from")
    memory_mb: int = Field(4096, ge=16, description="memory cap (and memory+swap)")
    cpus: float = Field(2.0, gt=0, description="CPU cap (NanoCpus / 1e9)")
    processes: int = Field(1024, ge=1, description="pids limit")
    tmpfs_mb: int = Field(1024, ge=1, description="size of each tmpfs mount")


class Refused(Exception):
    """A request the narrowed API does not allow; the message says why."""


def _empty(value: Any) -> bool:
    return value in (None, False, 0, "", [], {})


def check_create(body: dict[str, Any], ceilings: Ceilings) -> None:
    """Raise :class:`Refused` unless ``body`` (a ``POST /containers/create`` body) asks for
    a sandbox container with every limit."""
    if not isinstance(body, dict):
        raise Refused("the create body must be a JSON object")
    if body.get("Image") != ceilings.image:
        raise Refused(
            f"only the sandbox image {ceilings.image} may be run, not {body.get('Image')!r}"
        )
    for key, value in body.items():
        if key not in CONFIG_KEYS and not _empty(value):
            raise Refused(f"{key} is not allowed in a sandbox container")
    if body.get("NetworkDisabled") is False:
        raise Refused("NetworkDisabled must not be false")
    user = str(body.get("User") or "")
    uid = user.split(":", 1)[0]
    if not uid.isdigit() or int(uid) == 0:
        raise Refused(f"the sandbox must run as a numeric non-root user, not {user!r}")
    if not _empty(body.get("WorkingDir")) and body["WorkingDir"] not in TMPFS_TARGETS:
        raise Refused("WorkingDir must be a sandbox tmpfs")
    check_host_config(body.get("HostConfig") or {}, ceilings)


def check_host_config(host: dict[str, Any], ceilings: Ceilings) -> None:
    if not isinstance(host, dict):
        raise Refused("HostConfig must be a JSON object")
    for key in MUST_BE_ABSENT:
        if host.get(key) is not None:
            raise Refused(f"HostConfig.{key} is not allowed")
    for key, value in host.items():
        if key not in HOST_CONFIG_KEYS and not _empty(value):
            raise Refused(f"HostConfig.{key} is not allowed in a sandbox container")
    if host.get("NetworkMode") != "none":
        raise Refused("the sandbox must have no network (NetworkMode none)")
    if host.get("ReadonlyRootfs") is not True:
        raise Refused("the sandbox's root must be read-only (ReadonlyRootfs)")
    if "ALL" not in (host.get("CapDrop") or []):
        raise Refused("the sandbox must drop every capability (CapDrop ALL)")
    security = set(host.get("SecurityOpt") or [])
    if not security & NO_NEW_PRIVILEGES or security - NO_NEW_PRIVILEGES:
        raise Refused("SecurityOpt must be exactly no-new-privileges")
    _check_limits(host, ceilings)
    _check_tmpfs(host.get("Tmpfs") or {}, ceilings)
    log_type = (host.get("LogConfig") or {}).get("Type", "")
    if log_type not in LOG_DRIVERS:
        raise Refused(f"log driver {log_type!r} is not allowed")
    for ulimit in host.get("Ulimits") or []:
        if ulimit.get("Name") not in ULIMITS:
            raise Refused(f"ulimit {ulimit.get('Name')!r} is not allowed")


def _check_limits(host: dict[str, Any], ceilings: Ceilings) -> None:
    memory = int(host.get("Memory") or 0)
    cap = ceilings.memory_mb * 1024 * 1024
    if not 0 < memory <= cap:
        raise Refused(f"Memory must be set and at most {ceilings.memory_mb} MB")
    if int(host.get("MemorySwap") or 0) != memory:
        raise Refused("MemorySwap must equal Memory (no swap beyond the cap)")
    cpus = int(host.get("NanoCpus") or 0)
    if not 0 < cpus <= ceilings.cpus * 1e9:
        raise Refused(f"NanoCpus must be set and at most {ceilings.cpus} CPUs")
    pids = int(host.get("PidsLimit") or 0)
    if not 0 < pids <= ceilings.processes:
        raise Refused(f"PidsLimit must be set and at most {ceilings.processes}")


def _check_tmpfs(tmpfs: dict[str, str], ceilings: Ceilings) -> None:
    for target, options in tmpfs.items():
        if target not in TMPFS_TARGETS:
            raise Refused(f"tmpfs at {target} is not allowed (only {sorted(TMPFS_TARGETS)})")
        sizes = re.findall(r"(?:^|,)size=(\d+)(?:,|$)", options or "")
        if len(sizes) != 1 or int(sizes[0]) > ceilings.tmpfs_mb * 1024 * 1024:
            raise Refused(f"tmpfs at {target} needs a size of at most {ceilings.tmpfs_mb} MB")


def labelled(body: dict[str, Any]) -> bytes:
    """The create body with :data:`PROXY_LABEL` added, as JSON."""
    labels = dict(body.get("Labels") or {})
    labels[PROXY_LABEL] = "1"
    return json.dumps({**body, "Labels": labels}).encode()


def check_container(inspected: dict[str, Any], ceilings: Ceilings) -> None:
    """Raise :class:`Refused` unless an existing container is a sandbox made through the
    proxy (its label and image)."""
    config = inspected.get("Config") or {}
    if (config.get("Labels") or {}).get(PROXY_LABEL) != "1":
        raise Refused("only containers created through this proxy may be used")
    if config.get("Image") != ceilings.image:
        raise Refused(f"only containers of {ceilings.image} may be used")


def narrowed_filters(raw: str | None, ceilings: Ceilings) -> str:
    """A container list's ``filters`` query, narrowed to the proxy's own containers."""
    try:
        filters = json.loads(raw) if raw else {}
    except ValueError as exc:
        raise Refused("filters must be JSON") from exc
    if not isinstance(filters, dict):
        raise Refused("filters must be a JSON object")
    labels = filters.get("label") or []
    if isinstance(labels, dict):  # the older {"name": true} form
        labels = [k for k, v in labels.items() if v]
    filters["label"] = [*labels, f"{PROXY_LABEL}=1"]
    filters["ancestor"] = [ceilings.image]
    return json.dumps(filters)
