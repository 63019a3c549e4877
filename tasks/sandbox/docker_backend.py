"""The Docker backend: one throw-away container per run.

The container has no network, a read-only root, no capabilities, ``no-new-privileges``,
runs as 65534:65534, and is capped by cgroups (memory without swap, one CPU, pids) and
rlimits (CPU seconds, file size). Its working directory ``/work`` is a size-capped tmpfs.

Files go in as a tar stream on the container's stdin (``tar -x`` in ``/work``, then
``exec`` the command): ``put_archive`` is refused on a read-only root and a bind mount
would only work with a local engine. Output comes back over the same attach socket and is
counted as it arrives, so a program printing gigabytes is killed at the cap rather than
filling the engine's log or the host's memory.
"""

from __future__ import annotations

import io
import os
import socket
import struct
import tarfile
import threading
import time
from pathlib import PurePosixPath
from typing import Any

from tasks.core.janitor import watch_docker
from tasks.core.processes import pid_exists
from tasks.sandbox.base import Limits, SandboxUnavailable, Verdict
from tasks.sandbox.image import IMAGE, ensure_image
from tasks.sandbox.outcome import Capture, decide

WORK = "/work"
OWNER_PID = "winnow.pid"
OWNER_HOST = "winnow.host"
INSTALL_HINT = (
    "install Docker (apt-get install -y docker.io) and start the engine, "
    "or set DOCKER_HOST to a running one"
)
# Unpack the files, then become the command (so the program is PID 1's exec, no shell).
_BOOT = 'cd /work && tar -xf - 2>/dev/null && exec "$@"'


def engine_address() -> str | None:
    """The Docker engine address to try: ``DOCKER_HOST`` or the default socket."""
    host = os.environ.get("DOCKER_HOST")
    if host:
        return host
    if os.path.exists("/var/run/docker.sock"):
        return "unix:///var/run/docker.sock"
    return None


def connect(base_url: str | None = None, timeout: float = 5.0) -> Any:
    """A docker client whose engine answered a ping, or SandboxUnavailable."""
    import docker
    import docker.errors

    address = base_url or engine_address()
    if not address:
        raise SandboxUnavailable(
            f"no Docker engine (no DOCKER_HOST, no /var/run/docker.sock); {INSTALL_HINT}"
        )
    try:
        client = docker.DockerClient(base_url=address, timeout=int(timeout) or 1)
        client.ping()
    except Exception as exc:  # the SDK raises several unrelated types for "not there"
        raise SandboxUnavailable(
            f"the Docker engine at {address} does not answer ({exc}); {INSTALL_HINT}"
        ) from exc
    # Runs wait on their own deadline; API calls themselves may be slow under load.
    client.api.timeout = 120
    client.winnow_address = address  # for the run's janitor
    return client


def _tar_of(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        dirs: set[str] = set()
        for name, text in files.items():
            rel = PurePosixPath(name)
            if rel.is_absolute() or ".." in rel.parts or not rel.parts:
                raise ValueError(f"sandbox file names must be relative and stay inside: {name!r}")
            for parent in reversed(rel.parents[:-1]):
                if str(parent) not in dirs:
                    dirs.add(str(parent))
                    info = tarfile.TarInfo(str(parent))
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            data = text.encode("utf-8")
            info = tarfile.TarInfo(str(rel))
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < n:
        data = sock.recv(n - len(chunks))
        if not data:
            return None
        chunks.extend(data)
    return bytes(chunks)


class DockerSandbox:
    """Runs commands in containers of the sandbox image. ``run`` is thread-safe."""

    name = "docker"

    def __init__(self, client: Any | None = None, image: str = IMAGE, build: bool = True) -> None:
        self.client = client or connect()
        self.image = image
        self.address = getattr(self.client, "winnow_address", None) or engine_address()
        reap_orphans(self.client)
        if build:
            ensure_image(self.client, image)

    def _labels(self) -> dict[str, str]:
        """Who owns a container: the run's janitor removes it when the run ends, however
        it ends; a later start removes it if its process is gone (:func:`reap_orphans`)."""
        labels = watch_docker(self.address) if self.address else {}
        return {**labels, OWNER_PID: str(os.getpid()), OWNER_HOST: socket.gethostname()}

    def run(
        self, files: dict[str, str], command: list[str], limits: Limits | None = None
    ) -> Verdict:
        limits = limits or Limits()
        payload = _tar_of(files)
        start = time.monotonic()
        container = self._create(command, limits)
        try:
            return self._attach_and_run(container, payload, limits, start)
        finally:
            _remove(container)

    def _create(self, command: list[str], limits: Limits) -> Any:
        from docker.types import Ulimit

        cpu = max(1, int(limits.cpu_s))
        size = limits.tmp_mb * 1024 * 1024
        api = self.client.api
        host_config = api.create_host_config(
            network_mode="none",
            read_only=True,
            # docker-init as PID 1: the program then gets default signal actions (PID 1
            # ignores SIGXCPU, so the CPU rlimit would only bite at its hard limit).
            init=True,
            mem_limit=f"{limits.memory_mb}m",
            memswap_limit=f"{limits.memory_mb}m",
            nano_cpus=1_000_000_000,
            pids_limit=limits.processes,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            ulimits=[
                Ulimit(name="cpu", soft=cpu, hard=cpu + 1),
                Ulimit(name="fsize", soft=size, hard=size),
                Ulimit(name="core", soft=0, hard=0),
            ],
            # tmpfs pages count against the memory cgroup, so both are bounded twice over.
            tmpfs={
                WORK: f"rw,exec,nosuid,nodev,size={size},mode=1777",
                "/tmp": f"rw,nosuid,nodev,size={size},mode=1777",
            },
            log_config={"type": "none", "config": {}},
        )
        # Low-level call: with detach=False and stdin_open the SDK sets StdinOnce, so the
        # program sees EOF once our tar is sent (the high-level create cannot).
        created = api.create_container(
            self.image,
            ["/bin/sh", "-c", _BOOT, "sh", *command],
            stdin_open=True,
            user="65534:65534",
            # No working_dir: with it dockerd 20.10 re-creates /work as 0755 root, over the
            # tmpfs mode, and nobody could write there. The boot script cd's instead.
            network_disabled=True,
            labels=self._labels(),
            environment={
                "PATH": "/usr/bin:/bin",
                "HOME": WORK,
                "TMPDIR": WORK,
                "LANG": "C.UTF-8",
                "PYTHONDONTWRITEBYTECODE": "1",
            },
            host_config=host_config,
        )
        return self.client.containers.get(created["Id"])

    def _attach_and_run(
        self, container: Any, payload: bytes, limits: Limits, start: float
    ) -> Verdict:
        capture = Capture(limits.output_bytes)
        deadline = start + limits.wall_s
        raw = self.client.api.attach_socket(
            container.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
        )
        sock: socket.socket = getattr(raw, "_sock", raw)
        reader = threading.Thread(target=self._read_frames, args=(sock, capture), daemon=True)
        timed_out = False
        try:
            container.start()
            reader.start()
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            while reader.is_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                reader.join(timeout=min(remaining, 0.05))
                if capture.exceeded:
                    break
            if timed_out or capture.exceeded:
                # Hang up first: an engine blocked writing output to us cannot stop the
                # container, so the kill would wait for ever.
                _hang_up(sock)
                _kill(container)
            try:
                state = container.wait(timeout=max(1.0, deadline - time.monotonic() + 1.0))
                exit_code: int | None = int(state.get("StatusCode", -1))
            except Exception:  # the SDK's wait timeout surfaces as a requests error
                timed_out = True
                _kill(container)
                exit_code = int(container.wait(timeout=30).get("StatusCode", -1))
        finally:
            _hang_up(sock)
        reader.join(timeout=1.0)
        duration = time.monotonic() - start
        container.reload()
        oom = bool(container.attrs.get("State", {}).get("OOMKilled"))
        signal_num = None
        if exit_code is not None and 128 < exit_code < 128 + 65 and not timed_out:
            signal_num = exit_code - 128
        return decide(
            backend=self.name,
            limits=limits,
            exit_code=exit_code,
            capture=capture,
            duration_s=duration,
            wall_timed_out=timed_out,
            oom_killed=oom and not capture.exceeded,
            signal_num=signal_num,
        )

    @staticmethod
    def _read_frames(sock: socket.socket, capture: Capture) -> None:
        """Demultiplex the attach stream: 8-byte headers (stream id, length) + payload."""
        try:
            while not capture.exceeded:
                header = _recv_exact(sock, 8)
                if header is None:
                    return
                stream, length = header[0], struct.unpack(">I", header[4:])[0]
                data = _recv_exact(sock, length)
                if data is None:
                    return
                capture.add(data, stream == 2)
        except OSError:
            return


def _remove(container: Any) -> None:
    """Remove a container, retrying while the engine is still tearing it down."""
    import docker.errors

    for attempt in range(20):
        try:
            container.remove(force=True)
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            last = exc
            time.sleep(0.05 * (attempt + 1))
    raise SandboxUnavailable(f"could not remove sandbox container {container.id[:12]}: {last}")


def _hang_up(sock: socket.socket) -> None:
    for step in (lambda: sock.shutdown(socket.SHUT_RDWR), sock.close):
        try:
            step()
        except OSError:
            pass


def _kill(container: Any) -> None:
    try:
        container.kill()
    except Exception:  # it may have exited between the check and the kill
        pass


def reap_orphans(client: Any) -> int:
    """Remove sandbox containers whose process (on this host) is gone: a run killed
    together with its janitor (a machine or container restart) leaves them. How many."""
    host, removed = socket.gethostname(), 0
    try:
        found = client.containers.list(all=True, filters={"label": OWNER_PID})
    except Exception:  # an engine that cannot list: nothing to reap here
        return 0
    for container in found:
        labels = container.labels or {}
        pid = labels.get(OWNER_PID, "")
        if labels.get(OWNER_HOST) != host or not pid.isdigit() or pid_exists(int(pid)):
            continue
        try:
            container.remove(force=True)
            removed += 1
        except Exception:  # removed by someone else meanwhile
            pass
    return removed


def probe(base_url: str | None = None) -> str | None:
    """None when a Docker engine answers, else why not."""
    try:
        connect(base_url)
    except SandboxUnavailable as exc:
        return str(exc)
    return None
