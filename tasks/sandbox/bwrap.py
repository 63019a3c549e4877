"""The bubblewrap backend: a fresh mount, PID, network, IPC and user namespace per run.

What the program sees: ``/usr`` (read-only, ``/usr/local`` hidden) and its ``/bin``,
``/lib*``, ``/sbin`` symlinks, the few ``/etc`` entries an interpreter needs, its own
``/proc``, a read-only ``/dev`` with a size-capped ``/dev/shm``, and ``/work``: a
size-capped tmpfs holding read-only binds of its files (``/tmp`` points there too).
Nothing else of the host exists inside.

Limits: ``prlimit`` inside the sandbox sets address space, CPU seconds, processes and file
size. ``RLIMIT_NPROC`` is not enforced for root, so a root caller drops to uid 65534 with
``setpriv`` before starting bwrap. The wall clock is enforced here by killing bwrap's
process group; ``--die-with-parent`` and the PID namespace take every descendant with it.
Output is read through pipes with a hard byte cap.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from functools import cache
from pathlib import Path, PurePosixPath

from tasks.sandbox.base import Limits, SandboxUnavailable, Verdict
from tasks.sandbox.outcome import Capture, decide

NOBODY = 65534
WORK = "/work"
# /etc entries an interpreter may read; absent ones are skipped (--ro-bind-try).
ETC_ENTRIES = ("ld.so.cache", "alternatives", "php")
INSTALL_HINT = "install bubblewrap: apt-get install -y bubblewrap (and util-linux for setpriv)"


def _check_path(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"sandbox file names must be relative and stay inside: {name!r}")
    return path


class BwrapSandbox:
    """Runs commands under bubblewrap. Construct once; ``run`` is thread-safe."""

    name = "bwrap"

    def __init__(self, bwrap: str | None = None, temp_root: str | None = None) -> None:
        self.bwrap = bwrap or shutil.which("bwrap") or ""
        if not self.bwrap:
            raise SandboxUnavailable(f"bubblewrap is not installed; {INSTALL_HINT}")
        self.as_root = os.geteuid() == 0
        self.setpriv = shutil.which("setpriv") or ""
        if self.as_root and not self.setpriv:
            raise SandboxUnavailable(f"setpriv is missing (running as root); {INSTALL_HINT}")
        self.temp_root = temp_root

    def _argv(self, files: list[PurePosixPath], host_dir: Path, limits: Limits) -> list[str]:
        prefix: list[str] = []
        if self.as_root:
            prefix = [
                self.setpriv,
                f"--reuid={NOBODY}",
                f"--regid={NOBODY}",
                "--clear-groups",
                "--",
            ]
        argv = [
            *prefix,
            self.bwrap,
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--clearenv",
            "--ro-bind", "/usr", "/usr",
            "--tmpfs", "/usr/local",
        ]  # fmt: skip
        for link in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            target = Path("/") / link
            if target.is_symlink():
                argv += ["--symlink", os.readlink(target), f"/{link}"]
            elif target.is_dir():
                argv += ["--ro-bind", str(target), f"/{link}"]
        for entry in ETC_ENTRIES:
            argv += ["--ro-bind-try", f"/etc/{entry}", f"/etc/{entry}"]
        tmp_bytes = str(limits.tmp_mb * 1024 * 1024)
        argv += [
            "--proc", "/proc",
            # --dev makes /dev a writable, unbounded tmpfs (half of RAM): cap /dev/shm
            # (multiprocessing needs it) and make the rest of /dev read-only.
            "--dev", "/dev",
            "--size", tmp_bytes,
            "--tmpfs", "/dev/shm",
            "--remount-ro", "/dev",
            "--size", tmp_bytes,
            "--tmpfs", WORK,
            "--symlink", WORK, "/tmp",
        ]  # fmt: skip
        made: set[str] = set()
        for rel in files:
            for parent in reversed(rel.parents[:-1]):
                if str(parent) not in made:
                    made.add(str(parent))
                    argv += ["--dir", f"{WORK}/{parent}"]
            argv += ["--ro-bind", str(host_dir / rel), f"{WORK}/{rel}"]
        argv += [
            "--chdir", WORK,
            "--setenv", "PATH", "/usr/bin:/bin",
            "--setenv", "HOME", WORK,
            "--setenv", "TMPDIR", WORK,
            "--setenv", "LANG", "C.UTF-8",
            "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
            "--remount-ro", "/",
            "--",
            "/usr/bin/prlimit",
            f"--as={limits.memory_mb * 1024 * 1024}",
            f"--cpu={max(1, int(limits.cpu_s))}:{max(1, int(limits.cpu_s)) + 1}",
            f"--nproc={limits.processes}",
            f"--fsize={tmp_bytes}",
            "--core=0",
            "--",
        ]  # fmt: skip
        return argv

    def run(
        self, files: dict[str, str], command: list[str], limits: Limits | None = None
    ) -> Verdict:
        limits = limits or Limits()
        with tempfile.TemporaryDirectory(prefix="winnow-bw-", dir=self.temp_root) as tmp:
            host_dir = Path(tmp)
            # The sandbox runs as nobody: it must be able to read (never write) its files.
            host_dir.chmod(0o755)
            rels = []
            for name, text in files.items():
                rel = _check_path(name)
                target = host_dir / rel
                target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
                target.write_text(text, encoding="utf-8")
                target.chmod(0o644)
                rels.append(rel)
            argv = self._argv(rels, host_dir, limits) + list(command)
            return self._execute(argv, limits)

    def _execute(self, argv: list[str], limits: Limits) -> Verdict:
        capture = Capture(limits.output_bytes)
        start = time.monotonic()
        deadline = start + limits.wall_s
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: the wall-clock kill hits all
            env={"PATH": "/usr/bin:/bin"},
        )
        assert proc.stdout is not None and proc.stderr is not None
        timed_out = False
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ, False)
        sel.register(proc.stderr, selectors.EVENT_READ, True)
        try:
            open_streams = 2
            while open_streams:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                for key, _ in sel.select(timeout=remaining):
                    data = os.read(key.fd, 65536)
                    if not data:
                        sel.unregister(key.fileobj)
                        open_streams -= 1
                        continue
                    capture.add(data, key.data)
                if capture.exceeded:
                    break
            if timed_out or capture.exceeded:
                _kill_group(proc)
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc)
                proc.wait()
        finally:
            sel.close()
            proc.stdout.close()
            proc.stderr.close()
            if proc.poll() is None:
                _kill_group(proc)
                proc.wait()
        duration = time.monotonic() - start
        code = proc.returncode
        signal_num = None
        if code is not None and 128 < code <= 128 + signal.SIGRTMAX and not timed_out:
            # bwrap reports a program killed by signal n as exit status 128 + n (so a
            # program that exits with such a status itself is read as killed: rare).
            signal_num = code - 128
        return decide(
            backend=self.name,
            limits=limits,
            exit_code=code,
            capture=capture,
            duration_s=duration,
            wall_timed_out=timed_out,
            signal_num=signal_num,
        )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@cache
def probe() -> str | None:
    """None when bubblewrap can start a sandbox here, else why not (cached)."""
    try:
        sandbox = BwrapSandbox()
    except SandboxUnavailable as exc:
        return str(exc)
    verdict = sandbox.run({}, ["/bin/true"], Limits(wall_s=10))
    if not verdict.passed:
        return (
            f"bubblewrap is installed but cannot create a sandbox here ({verdict.reason}); "
            "it needs unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)"
        )
    return None
