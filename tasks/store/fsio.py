"""Shard files on a local disk or behind an fsspec URL.

A location is a plain path (or a ``file://`` URL, which is the same thing) or a URL that
fsspec knows: ``memory://`` (one process: tests), ``s3://bucket/prefix`` (with the
``s3fs`` package), ``gcs://``, ``abfs://``... Local paths keep the fast, durable route
(temp file, fsync, rename); a URL goes through fsspec, where one whole-object write is
the atomic step that object stores offer.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

LOCAL_SCHEME = "file://"


def is_remote(location: str | os.PathLike[str]) -> bool:
    """True for a URL that needs fsspec (``file://`` is local)."""
    text = str(location) if not isinstance(location, Path) else ""
    return "://" in text and not text.startswith(LOCAL_SCHEME)


def local_path(location: str | os.PathLike[str]) -> Path:
    text = str(location)
    return Path(text[len(LOCAL_SCHEME) :] if text.startswith(LOCAL_SCHEME) else text)


def join(root: str | os.PathLike[str], *parts: str) -> str:
    """``root/part/...`` for a directory or a URL (a URL keeps its ``//``)."""
    if is_remote(root):
        return "/".join([str(root).rstrip("/"), *parts])
    return str(local_path(root).joinpath(*parts))


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem serving ``url`` and the path within it. An unknown scheme or
    a missing driver (e.g. ``s3fs`` for ``s3://``) raises here, before any work."""
    from fsspec.core import url_to_fs

    return url_to_fs(url)


def check(root: str) -> None:
    """Fail early and clearly if ``root`` cannot be used as a shard root."""
    if not is_remote(root):
        return
    try:
        filesystem(root)
    except (ImportError, ValueError) as exc:
        raise ValueError(f"storage {root!r} is not usable here: {exc}") from exc


def makedirs(location: str) -> None:
    if is_remote(location):
        fs, path = filesystem(location)
        fs.makedirs(path, exist_ok=True)  # object stores have no directories: a no-op
    else:
        local_path(location).mkdir(parents=True, exist_ok=True)


def exists(location: str) -> bool:
    if is_remote(location):
        fs, path = filesystem(location)
        return bool(fs.exists(path))
    return local_path(location).exists()


def read_text(location: str) -> str:
    if is_remote(location):
        fs, path = filesystem(location)
        return fs.cat_file(path).decode("utf-8")
    return local_path(location).read_text()


def write_bytes(location: str, data: bytes) -> None:
    """Write a whole file so a reader sees all of it or nothing (local: temp + rename)."""
    if is_remote(location):
        fs, path = filesystem(location)
        parent = path.rsplit("/", 1)[0]
        if parent and parent != path:
            fs.makedirs(parent, exist_ok=True)
        fs.pipe_file(path, data)
        return
    target = local_path(location)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(location: str, text: str) -> None:
    write_bytes(location, text.encode("utf-8"))


@contextmanager
def open_input(location: str | os.PathLike[str]) -> Iterator[str | IO[bytes]]:
    """Something pyarrow can read: the local path itself, or an open fsspec file."""
    if not is_remote(location):
        yield str(local_path(location))
        return
    fs, path = filesystem(str(location))
    with fs.open(path, "rb") as handle:
        yield handle


def register_with_duckdb(con: Any, locations: list[str]) -> None:
    """Let a DuckDB connection read ``locations`` that are fsspec URLs."""
    seen: set[str] = set()
    for location in locations:
        if is_remote(location):
            fs, _ = filesystem(location)
            protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
            if protocol not in seen:
                seen.add(protocol)
                con.register_filesystem(fs)
