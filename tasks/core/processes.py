"""Child processes that do not outlive their parent, whatever ends it.

``die_with_parent`` goes in a child's ``preexec_fn``: it asks Linux to SIGKILL the child
the moment the process that started it dies (``PR_SET_PDEATHSIG``), a SIGKILL of the
parent included, which no cleanup code of the parent would survive to do.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child, before ``exec``: be killed when the parent dies (Linux; elsewhere a
    no-op). If the parent is already gone, exit now."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:
        return
    if os.getppid() == 1:  # the parent died between fork and prctl
        os._exit(1)


def pid_exists(pid: int) -> bool:
    """Whether a process with this pid exists (ours or not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's
        return True
    return True
