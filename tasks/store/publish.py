"""Publishing a dataset directory so that no reader ever sees half of it.

``publish(out_dir, files)`` writes every file into a temp directory next to ``out_dir``
(same filesystem), makes it durable, then puts it in place:

- on Linux, with one ``renameat2(RENAME_EXCHANGE)`` that swaps the new directory and the
  old one atomically: a reader sees the previous version or the new one, never neither;
- elsewhere, with two renames (old -> aside, new -> in place); a crash between them
  leaves no directory at ``out_dir`` but the previous version aside, and
  ``recover(out_dir)`` (run by the next ``publish``) moves it back.

A kill at any point while files are being written leaves ``out_dir`` untouched; the
orphaned temp directory is removed by the next ``publish`` to the same place.

File contents are chosen by name: ``*.jsonl`` and ``*.parquet`` take an iterable of rows
(streamed, flat memory), ``*.json`` any JSON value, other names ``str``/``bytes``, and
any name a callable ``writer(path)`` that writes the file itself. A ``manifest.json``
with each file's size, sha256 and row count is written last.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tasks.core.killpoints import kill_point
from tasks.core.processes import pid_exists
from tasks.core.records import json_default
from tasks.store.shards import write_shard_stream

FileContent = Iterable[Mapping[str, Any]] | Mapping[str, Any] | list[Any] | str | bytes
Writer = Callable[[Path], Any]

MANIFEST = "manifest.json"
_TMP_TAG = ".tmp-"
_OLD_TAG = ".old-"


class FileInfo(BaseModel):
    bytes: int
    sha256: str
    rows: int | None = None


class PublishResult(BaseModel):
    path: Path
    files: dict[str, FileInfo]


# --------------------------------------------------------------------------- JSONL


def _row_dict(row: Mapping[str, Any] | BaseModel) -> Mapping[str, Any]:
    return row.model_dump(mode="json") if isinstance(row, BaseModel) else row


def _write_jsonl(path: Path, rows: Iterable[Mapping[str, Any] | BaseModel]) -> int:
    n = 0
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(_row_dict(row), ensure_ascii=False, default=json_default))
            fh.write("\n")
            n += 1
        fh.flush()
        os.fsync(fh.fileno())
    return n


def write_jsonl_atomic(
    path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any] | BaseModel]
) -> int:
    """Write rows as JSON Lines at ``path``, all or nothing. Returns the row count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{_TMP_TAG}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        n = _write_jsonl(tmp, rows)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return n


class JsonlSink:
    """JSON Lines written as rows come and published all at once: rows go to a hidden
    temporary file beside ``path``; :meth:`commit` makes it ``path`` atomically, and
    leaving the ``with`` block without committing (an error) removes it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tag = f"{_TMP_TAG}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.tmp = self.path.with_name(f".{self.path.name}{tag}")
        self._fh = open(self.tmp, "w", encoding="utf-8", newline="\n")  # noqa: SIM115
        self.rows = 0

    def write(self, rows: Iterable[Mapping[str, Any] | BaseModel]) -> None:
        for row in rows:
            self._fh.write(json.dumps(_row_dict(row), ensure_ascii=False, default=json_default))
            self._fh.write("\n")
            self.rows += 1

    def commit(self) -> int:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.tmp, self.path)
        _fsync_dir(self.path.parent)
        return self.rows

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._fh.closed:
            self._fh.close()
        self.tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- helpers


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # not every filesystem can fsync a directory
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _safe_name(name: str) -> Path:
    rel = Path(name)
    if not name or rel.is_absolute() or ".." in rel.parts or name == MANIFEST:
        raise ValueError(f"bad file name in a dataset: {name!r}")
    return rel


def _write_one(path: Path, content: FileContent | Writer) -> int | None:
    """Write one file, return its row count where that means something."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if callable(content) and not isinstance(content, Mapping | list | str | bytes):
        result = content(path)
        _fsync_file(path)
        return result if isinstance(result, int) and not isinstance(result, bool) else None
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _write_jsonl(path, content)  # type: ignore[arg-type]
    if suffix == ".parquet":
        return write_shard_stream(content, path).rows  # type: ignore[arg-type]
    if suffix == ".json":
        text = json.dumps(content, ensure_ascii=False, indent=2, default=json_default)
        path.write_text(text + "\n", encoding="utf-8")
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        raise TypeError(f"don't know how to write {type(content).__name__} to {path.name}")
    _fsync_file(path)
    return None


# --------------------------------------------------------------------------- swapping

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _load_renameat2() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_renameat2 = _load_renameat2()


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths. False where the system can't."""
    if _renameat2 is None:
        return False
    rc = _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: filesystem or kernel can't
        return False
    raise OSError(err, os.strerror(err), str(a))


def _swap_in(new: Path, target: Path, aside: Path) -> None:
    if target.exists():
        if _exchange(new, target):
            shutil.rmtree(new, ignore_errors=True)  # `new` now holds the previous version
            return
        os.rename(target, aside)
        os.rename(new, target)  # a crash right before this: recover() puts `aside` back
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.rename(new, target)


def recover(out_dir: str | os.PathLike[str]) -> None:
    """Undo what a crashed ``publish`` left next to ``out_dir``.

    Restores the previous version if a crash came between the two renames of the
    fallback swap, and removes temp directories of publishes whose process is gone.
    """
    target = Path(out_dir)
    parent = target.parent
    if not parent.is_dir():
        return
    asides = sorted(parent.glob(f".{target.name}{_OLD_TAG}*"), key=lambda p: p.stat().st_mtime)
    if asides and not target.exists():
        os.rename(asides.pop(), target)
    for path in asides:
        shutil.rmtree(path, ignore_errors=True)
    for tmp in parent.glob(f".{target.name}{_TMP_TAG}*"):
        pid_text = tmp.name.rsplit(_TMP_TAG, 1)[1].split("-", 1)[0]
        if pid_text.isdigit() and pid_exists(int(pid_text)):
            continue  # a publish in progress, maybe in another thread or process
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def publish(
    out_dir: str | os.PathLike[str],
    files: Mapping[str, FileContent | Writer],
    *,
    manifest: Mapping[str, Any] | None = None,
) -> PublishResult:
    """Write ``files`` as the complete new content of ``out_dir``, atomically.

    ``files`` maps a relative file name to its content (see the module docstring).
    Whatever ``out_dir`` held before is replaced as a whole. ``manifest`` adds fields
    (run id, recipe...) to the ``manifest.json`` written with the dataset.
    """
    target = Path(out_dir).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = target.with_name(f".{target.name}{_TMP_TAG}{token}")
    aside = target.with_name(f".{target.name}{_OLD_TAG}{token}")
    tmp.mkdir()
    try:
        infos: dict[str, FileInfo] = {}
        for name, content in files.items():
            path = tmp / _safe_name(name)
            rows = _write_one(path, content)
            infos[name] = FileInfo(bytes=path.stat().st_size, sha256=_sha256(path), rows=rows)
            kill_point(f"publish.{name}")
        document = {
            **(manifest or {}),
            "published_at": datetime.now(UTC).isoformat(),
            "files": {n: i.model_dump() for n, i in infos.items()},
        }
        _write_one(tmp / MANIFEST, document)
        for directory in {tmp, *((tmp / _safe_name(n)).parent for n in files)}:
            _fsync_dir(directory)
        kill_point("publish.swap")
        _swap_in(tmp, target, aside)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PublishResult(path=target, files=infos)


def read_manifest(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a published dataset."""
    return json.loads((Path(out_dir) / MANIFEST).read_text(encoding="utf-8"))
