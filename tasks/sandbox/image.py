"""Build the Docker sandbox image when it is missing.

No image registry is reachable on the machines Winnow runs on, so the image is made from
Debian packages: ``debootstrap --variant=minbase`` into a temporary root, then
``docker import`` of that root as a tar stream. Where a registry is reachable,
``infra/sandbox/Dockerfile`` builds an equivalent image the ordinary way.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

from tasks.sandbox.base import SandboxUnavailable

# Bump the tag whenever PACKAGES change: an existing image is never rebuilt.
IMAGE = "winnow-sandbox:bookworm-1"
SUITE = "bookworm"
# python3, not python3-minimal: the minimal package lacks most of the standard library
# (unittest, json, dataclasses, decimal, ...), which generated tests use all the time.
PACKAGES = ("python3", "php-cli")
MIRROR = "http://deb.debian.org/debian"

_build_lock = threading.Lock()
log = logging.getLogger(__name__)


def image_exists(client: Any, name: str = IMAGE) -> bool:
    """True when the engine behind ``client`` already has ``name``."""
    import docker.errors

    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def debootstrap_root(root: Path, mirror: str = MIRROR) -> None:
    """Make a minimal Debian root with the interpreters in ``root`` (about 30 s)."""
    if shutil.which("debootstrap") is None:
        raise SandboxUnavailable(
            "debootstrap is needed to build the sandbox image: apt-get install -y debootstrap "
            "(or build infra/sandbox/Dockerfile where a registry is reachable)"
        )
    cmd = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(root),
        mirror,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise SandboxUnavailable("debootstrap failed: " + " | ".join(tail))


def _import_root(client: Any, root: Path, name: str) -> None:
    """``tar -C root -c . | docker import - name``, streamed through the SDK."""
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(root), "-c", "."], stdout=subprocess.PIPE
    )
    assert tar.stdout is not None
    try:
        repo, _, tag = name.partition(":")
        # images.import_image streams a file object to POST /images/create?fromSrc=-
        client.api.import_image_from_stream(tar.stdout, repository=repo, tag=tag or "latest")
    finally:
        tar.stdout.close()
        tar.wait()
    if tar.returncode != 0:
        raise SandboxUnavailable(f"tar of the image root failed (exit {tar.returncode})")


def ensure_image(client: Any, name: str = IMAGE, work_dir: Path | None = None) -> bool:
    """Build ``name`` unless the engine behind ``client`` has it; True when built now.

    ``work_dir`` is where the temporary root goes (default: the system temp dir).
    """
    with _build_lock:
        if image_exists(client, name):
            return False
        log.warning("building the sandbox image %s from Debian packages (once, ~1 min)", name)
        with tempfile.TemporaryDirectory(prefix="winnow-rootfs-", dir=work_dir) as tmp:
            root = Path(tmp) / "root"
            debootstrap_root(root)
            # Trim what a sandbox never needs: apt lists and caches, docs, man pages.
            for junk in ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
                shutil.rmtree(root / junk, ignore_errors=True)
            _import_root(client, root, name)
        return True
