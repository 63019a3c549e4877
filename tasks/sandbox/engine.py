"""A private Docker engine, for CI and tests on machines where none runs.

CI runs as root on a fresh machine with ``docker.io`` installed but no engine started.
:class:`PrivateDockerd` starts ``dockerd`` with its own data root, exec root and socket,
and ALWAYS with ``--bridge=none --iptables=false --ip-masq=false``: without them dockerd
rewrites the host's firewall and routing. The data root is kept between runs (under the
Winnow cache dir) so the sandbox image is built once per machine.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

from tasks.sandbox.base import SandboxUnavailable

NETWORK_FLAGS = ("--bridge=none", "--iptables=false", "--ip-masq=false")


def can_start_private() -> str | None:
    """None when a private dockerd can be started here, else why not."""
    if shutil.which("dockerd") is None:
        return "dockerd is not installed (apt-get install -y docker.io)"
    if os.geteuid() != 0:
        return "a private dockerd needs root"
    return None


class PrivateDockerd:
    """``with PrivateDockerd(data_root) as address:`` runs dockerd for the block."""

    def __init__(self, data_root: Path | None = None, start_timeout: float = 60.0) -> None:
        if data_root is None:
            from tasks.core.paths import cache_dir

            data_root = cache_dir() / "dockerd"
        self.data_root = data_root
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None
        self._run_dir: str | None = None
        self._own_data_root = False
        self.address = ""

    def start(self) -> str:
        why = can_start_private()
        if why:
            raise SandboxUnavailable(why)
        self.data_root.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.data_root.parent / f"{self.data_root.name}.lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # Another session owns the shared data root: use a throw-away one.
            self._lock.close()
            self._lock = None
            self.data_root = Path(tempfile.mkdtemp(prefix="winnow-dockerd-"))
            self._own_data_root = True
        # Short path: unix socket paths are limited to 108 bytes.
        self._run_dir = tempfile.mkdtemp(prefix="wdk-")
        sock = f"{self._run_dir}/docker.sock"
        self.address = f"unix://{sock}"
        log = open(f"{self._run_dir}/dockerd.log", "wb")
        self.proc = subprocess.Popen(
            [
                "dockerd",
                "--data-root",
                str(self.data_root),
                "--exec-root",
                f"{self._run_dir}/exec",
                "--pidfile",
                f"{self._run_dir}/dockerd.pid",
                "--host",
                self.address,
                *NETWORK_FLAGS,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self._wait_ready()
        return self.address

    def _wait_ready(self) -> None:
        from tasks.sandbox.docker_backend import probe

        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                break
            if Path(self.address.removeprefix("unix://")).exists() and probe(self.address) is None:
                return
            time.sleep(0.2)
        log_tail = self.log_tail()
        self.stop()
        raise SandboxUnavailable(f"private dockerd did not start: {log_tail}")

    def log_tail(self, lines: int = 5) -> str:
        if not self._run_dir:
            return ""
        try:
            text = Path(self._run_dir, "dockerd.log").read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM dockerd (it stops its containerd and containers), SIGKILL if stuck."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        if self._run_dir:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None
        if self._own_data_root:
            shutil.rmtree(self.data_root, ignore_errors=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
