"""Named kill points: a test hook that SIGKILLs this process at a chosen place.

Off unless ``WINNOW_KILL_AT`` is set. Fault tests set it to prove that a run killed at
an awkward moment (between two files of a publish, inside a gate, after a shard's work
but before its completion marker) resumes cleanly. Random-timing kills cannot promise
to land in a window a few milliseconds wide; a named point can.

``WINNOW_KILL_AT=NAME`` kills at the first time ``kill_point(NAME)`` is reached,
``NAME@N`` at the N-th time (counted in this process). Names in use:

- ``shard.<stage>``: a shard's stage function has returned, its outputs are not written
- ``gate.<suite>``: a gate is about to validate
- ``publish.<file>``: that file is written in the temp directory of a publish
- ``publish.swap``: every file and the manifest are written, the swap is next
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

ENV = "WINNOW_KILL_AT"

_lock = threading.Lock()
_hits: Counter[str] = Counter()


def kill_point(name: str) -> None:
    """SIGKILL this process if ``WINNOW_KILL_AT`` names this point (and hit count)."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    target, _, nth = wanted.partition("@")
    if target != name:
        return
    with _lock:
        _hits[name] += 1
        hit = _hits[name]
    if hit == (int(nth) if nth else 1):
        os.kill(os.getpid(), signal.SIGKILL)
