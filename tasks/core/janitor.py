"""Nothing a run starts outlives it: one janitor process per run process.

A run starts other processes: Prefect's temporary server (per-run mode), Dask and Ray
clusters, sandbox containers, and their children. Cleanup code in the run cannot promise
they stop: a SIGKILL, the OOM killer or a container restart ends the run before any of it
runs. So each run process starts a *janitor* first:

- the run marks its environment with ``WINNOW_RUN_TOKEN`` (a fresh token); every process it
  starts later inherits the mark, and so do their children, however they were started;
- the janitor holds the read end of a pipe whose write end only the run holds (it is not
  inherited, and a forked child closes it), and a pidfd of the run. When the run ends,
  *however* it ends, the pidfd turns readable and the pipe reads end-of-file. The janitor
  then terminates every process that carries the mark
  (SIGTERM, then SIGKILL after a grace period), removes the run's sandbox containers
  (labelled with the token) from the engines the run told it about, and deletes the
  run's temporary directory;
- a process forked without ``exec`` keeps the environment the run had when it started,
  without the mark: the janitor also notes the run's descendants every half second and
  stops those too (a fork that lives less than that can escape it);
- the janitor lives in its own session, so a Ctrl-C in the terminal (sent to the whole
  foreground process group) or a kill of the run's group does not take it down first.

A process that must outlive the run on purpose (the background Prefect server that
``winnow server`` owns) is started without the token and with ``WINNOW_OUTLIVES_RUN=1``
(:func:`unmarked_env`), which the janitor respects.

The janitor's own module imports nothing heavy: it starts in a few tens of milliseconds.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

TOKEN_ENV = "WINNOW_RUN_TOKEN"
SPARE_ENV = "WINNOW_OUTLIVES_RUN"  # started to outlive the run on purpose
DISABLE_ENV = "WINNOW_JANITOR"  # "0": no janitor (a debugging aid)
CONTAINER_LABEL = "winnow.run"
GRACE_S = 3.0
SCAN_EVERY_S = 0.5


class Janitor:
    """The run side: the token, the pipe to the janitor process, the run's temp dir."""

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex[:16]
        self.temp_dir = Path(tempfile.gettempdir()) / f"winnow-{self.token}"
        self.temp_dir.mkdir(mode=0o755)
        read, self._write = os.pipe()  # both ends non-inheritable (PEP 446)
        argv = [sys.executable, __file__, self.token, str(self.temp_dir), str(os.getpid())]
        # posix_spawn rather than Popen: nothing to reap or warn about at the run's exit.
        self.pid = os.posix_spawn(
            sys.executable,
            argv,
            unmarked_env(),
            file_actions=[
                (os.POSIX_SPAWN_DUP2, read, 0),
                (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
            ],
            setsid=True,
        )
        os.close(read)
        os.environ[TOKEN_ENV] = self.token
        # Python's own temporary files and directories of this run go under the run's
        # directory, which the janitor deletes whatever happens to the run.
        tempfile.tempdir = str(self.temp_dir)

    def alive(self) -> bool:
        try:
            return os.waitpid(self.pid, os.WNOHANG) == (0, 0)
        except ChildProcessError:
            return False

    def tell(self, line: str) -> None:
        """One instruction for the janitor (``docker ADDRESS``)."""
        try:
            os.write(self._write, (line.replace("\n", " ") + "\n").encode())
        except OSError:
            pass


_janitor: Janitor | None = None


def _forget_in_child() -> None:
    """A forked child is not the run: it must not hold the run's end of the pipe open."""
    global _janitor
    if _janitor is not None:
        try:
            os.close(_janitor._write)
        except OSError:
            pass
        _janitor = None


os.register_at_fork(after_in_child=_forget_in_child)


def ensure_janitor() -> Janitor | None:
    """This process's janitor, started on first use (None where disabled or not Linux)."""
    global _janitor
    if _janitor is not None and _janitor.alive():
        return _janitor
    if os.environ.get(DISABLE_ENV) == "0" or not Path("/proc/self/environ").exists():
        return None
    try:
        _janitor = Janitor()
    except OSError:
        return None
    return _janitor


def current_token() -> str | None:
    """The token of this process's run, if a janitor watches it."""
    return _janitor.token if _janitor is not None else None


def watch_docker(address: str) -> dict[str, str]:
    """The labels a sandbox container of this run carries; tells the janitor to remove
    containers with them from the engine at ``address`` when the run ends."""
    janitor = ensure_janitor()
    if janitor is None:
        return {}
    janitor.tell(f"docker {address}")
    return {CONTAINER_LABEL: janitor.token}


def unmarked_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for a process meant to outlive the run: no run token, and a mark
    that tells the janitor to spare it and its children although they descend from it."""
    source = os.environ if env is None else env
    return {k: v for k, v in source.items() if k != TOKEN_ENV} | {SPARE_ENV: "1"}


# --- the janitor process ------------------------------------------------------------------


def marked_processes(token: str, name: str = TOKEN_ENV) -> list[int]:
    """PIDs of the processes whose environment carries ``name=token`` (this one aside)."""
    needle = f"{name}={token}".encode()
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
        except OSError:  # gone, or not ours to read
            continue
        if needle in env.split(b"\0"):
            found.append(int(entry))
    return found


def terminate(pids: list[int], grace_s: float = GRACE_S) -> None:
    """SIGTERM each, then SIGKILL what is still there after ``grace_s``."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.05)
    for pid in pids:
        if _running(pid):
            _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _running(pid: int) -> bool:
    """Alive and not a zombie (a zombie only waits for its parent to reap it)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def _same(pid: int, started: str) -> bool:
    """Still the process noted then, running, and not one started to outlive the run."""
    stat = _stat(pid)
    return stat is not None and stat[1] == started and _running(pid) and not _spared(pid)


def _spared(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f"{SPARE_ENV}=1".encode() in f.read().split(b"\0")
    except OSError:
        return False


def remove_containers(address: str, token: str) -> None:
    try:
        import docker

        client = docker.DockerClient(base_url=address, timeout=10)
        for container in client.containers.list(
            all=True, filters={"label": f"{CONTAINER_LABEL}={token}"}
        ):
            try:
                container.remove(force=True)
            except Exception:  # already going: the engine removes it
                pass
    except Exception:  # no engine any more: nothing of ours runs there
        pass


def clean_up(
    token: str, temp_dir: str, engines: set[str], seen: dict[int, str] | None = None
) -> None:
    """What the janitor does once the run has ended: stop the processes that carry its
    token and those it saw descend from the run (if still the same processes)."""
    for _ in range(3):  # a process may start another while it is being stopped
        pids = marked_processes(token)
        pids += [p for p, t in (seen or {}).items() if p not in pids and _same(p, t)]
        pids = [p for p in pids if p != os.getpid()]  # the janitor descends from the run
        if not pids:
            break
        terminate(pids)
    for address in engines:
        remove_containers(address, token)
    shutil.rmtree(temp_dir, ignore_errors=True)


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of a process, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[19].decode()


def descendants(root: int) -> dict[int, str]:
    """Every living descendant of ``root``: pid → start time (to tell a reused pid)."""
    parents: dict[int, list[int]] = {}
    started: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            parents.setdefault(stat[0], []).append(int(entry))
            started[int(entry)] = stat[1]
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found[child] = started[child]
                todo.append(child)
    return found


def _wait_for_the_end(run_pid: int, seen: dict[int, str]) -> set[str]:
    """Read instructions until the run has ended; the engines it named. Meanwhile, the
    run's descendants are noted every half second into ``seen``: a child forked without exec
    keeps the environment the run started with (no token), so only its parentage tells."""
    engines: set[str] = set()
    try:
        run = os.pidfd_open(run_pid)
    except ProcessLookupError:
        return engines  # over already
    except (OSError, AttributeError):  # no pidfds (old kernel): the pipe alone tells
        run = None
    pending = b""
    watched = [0] + ([run] if run is not None else [])
    while True:
        ready, _, _ = select.select(watched, [], [], SCAN_EVERY_S)
        if not ready:
            seen.update(descendants(run_pid))
            continue
        if 0 in ready:
            chunk = os.read(0, 65536)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                kind, _, value = line.decode(errors="replace").strip().partition(" ")
                if kind == "docker" and value:
                    engines.add(value)
            if not chunk:
                return engines
        if run is not None and run in ready:
            return engines


def main(argv: list[str]) -> None:
    token, temp_dir, run_pid = argv[0], argv[1], int(argv[2])
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # outlive the run's terminal and group
    seen: dict[int, str] = {}
    engines = _wait_for_the_end(run_pid, seen)
    clean_up(token, temp_dir, engines, seen)


if __name__ == "__main__":
    main(sys.argv[1:])
