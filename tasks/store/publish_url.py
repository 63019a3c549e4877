"""Publishing a dataset directory to an fsspec URL (``s3://bucket/datasets/code-sft``).

An object store has no atomic directory swap, so the directory is first published
locally (``tasks.store.publish``: complete, checked, with its manifest), then uploaded
file by file with ``manifest.json`` last, and files of the previous version that the new
one does not have are removed. A reader that starts from ``manifest.json`` (sizes and
sha256 of every file) can tell a complete version from one being replaced.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tasks.core.paths import state_dir
from tasks.store import fsio
from tasks.store.publish import MANIFEST, FileContent, FileInfo, Writer, publish


def publish_to_url(
    url: str,
    files: Mapping[str, FileContent | Writer],
    *,
    manifest: Mapping[str, Any] | None = None,
) -> dict[str, FileInfo]:
    """Write ``files`` as the new content of the directory at ``url``."""
    fs, root = fsio.filesystem(url)
    root = root.rstrip("/")
    with tempfile.TemporaryDirectory(dir=state_dir(), prefix=".publish-") as staging:
        local = Path(staging) / "out"
        result = publish(local, files, manifest=manifest)
        fs.makedirs(root, exist_ok=True)
        for name in sorted(result.files):
            target = f"{root}/{name}"
            parent = target.rsplit("/", 1)[0]
            if parent != root:
                fs.makedirs(parent, exist_ok=True)
            fs.put_file(str(local / name), target)
        fs.put_file(str(local / MANIFEST), f"{root}/{MANIFEST}")
    keep = {f"{root}/{name}" for name in [*result.files, MANIFEST]}
    for path in fs.find(root):  # what only the previous version had
        if path not in keep:
            fs.rm(path)
    return result.files
