"""Adapter for the embedded GGUF model, run in-process with llama-cpp-python.

The model is loaded once per process and file (a 1.1 GB load costs 1-2 s and the RAM
it takes), and every call on it is serialized: llama.cpp contexts are not re-entrant,
and on a small machine one generation already uses every core. Calls run on one
dedicated thread per model so the shared event loop keeps serving other providers.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tasks.llm.base import (
    ChatRequest,
    Completion,
    ConfigError,
    Logprobs,
    PermanentError,
    ProviderSpec,
    Usage,
)

N_CTX = 4096


@dataclass
class _Loaded:
    llama: Any
    lock: threading.Lock = field(default_factory=threading.Lock)
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="winnow-llama")
    )


_models: dict[Path, _Loaded] = {}
_models_lock = threading.Lock()


def load_model(path: Path) -> _Loaded:
    """The process's llama.cpp model for ``path``, loaded on first use."""
    path = path.resolve()
    with _models_lock:
        loaded = _models.get(path)
        if loaded is None:
            try:
                from llama_cpp import Llama
            except ImportError as exc:  # pragma: no cover - it is a dependency
                raise ConfigError(f"llama-cpp-python is not installed: {exc}") from exc
            failure = ""
            try:
                llama = Llama(
                    model_path=str(path),
                    n_ctx=N_CTX,
                    n_threads=os.cpu_count() or 1,
                    verbose=False,
                )
            except (ValueError, RuntimeError, OSError) as exc:
                # Raised outside the handler: a traceback kept by the caller would keep the
                # half-built Llama alive until interpreter exit, where its __del__ fails.
                failure = str(exc)
            if failure:
                raise ConfigError(f"cannot load the GGUF model {path}: {failure}")
            loaded = _models[path] = _Loaded(llama)
        return loaded


@atexit.register
def _unload_all() -> None:
    """Free models before interpreter teardown (llama.cpp's __del__ fails after it)."""
    with _models_lock:
        for loaded in _models.values():
            loaded.executor.shutdown(wait=True)
            loaded.llama.close()
        _models.clear()


def embedded_model_path() -> Path:
    """Where the embedded model is, from ``tasks.llm.embedded_model`` (which honours
    ``WINNOW_MODEL_PATH``); its errors become ConfigError."""
    try:
        from tasks.llm.embedded_model import resolve_model_path
    except ImportError:
        explicit = os.environ.get("WINNOW_MODEL_PATH")
        if explicit:
            return Path(explicit)
        raise ConfigError("the embedded model is not installed: run `winnow model`") from None
    try:
        return Path(resolve_model_path())
    except ConfigError:
        raise
    except Exception as exc:  # its own error type, telling the user to run `winnow model`
        raise ConfigError(str(exc)) from exc


class TokenLogprobRecorder:
    """A llama.cpp logits processor that records, at no extra model call, the
    log-probability the model gave each token it went on to write.

    llama-cpp-python only returns logprobs from a model loaded with ``logits_all`` (a
    logits row per prompt token: ~0.6 GB per 1,000 tokens for this vocabulary). A
    processor sees the raw next-token logits before sampling instead; at the next call
    the token sampled from them is the last of ``input_ids``. It returns the logits
    untouched, so sampling is unchanged. The last sampled token is never fed back: when
    it is the end-of-sequence token (an answer that stopped) every written token is
    covered; an answer cut at ``max_tokens`` misses its last token.
    """

    def __init__(self) -> None:
        self.logprobs: list[float] = []
        self._last: np.ndarray | None = None
        self._last_lse = 0.0

    def __call__(self, input_ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        if self._last is not None and len(input_ids):
            token = int(input_ids[-1])
            if 0 <= token < self._last.size:
                self.logprobs.append(float(self._last[token]) - self._last_lse)
        values = np.array(logits, dtype=np.float64)  # a copy: llama.cpp reuses its buffer
        top = float(values.max())
        self._last_lse = top + float(np.log(np.exp(values - top).sum()))
        self._last = values
        return logits


class LocalProvider:
    """``kind="local"``. ``spec.model`` may name a GGUF file; empty = the embedded model."""

    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec
        self._path: Path | None = Path(spec.model) if spec.model else None
        self._loaded: _Loaded | None = None

    @property
    def name(self) -> str:
        return "local"

    @property
    def model(self) -> str:
        # The file name identifies the weights in the journal key without hashing 1 GB.
        return self._path.name if self._path else self.spec.model

    async def check(self) -> None:
        if self._path is None:
            self._path = embedded_model_path()
        if not self._path.is_file():
            raise ConfigError(f"GGUF model file not found: {self._path} (run `winnow model`)")
        self._loaded = await asyncio.to_thread(load_model, self._path)

    def _arguments(self, request: ChatRequest) -> dict[str, Any]:
        p = request.params
        args: dict[str, Any] = {
            "messages": [m.model_dump() for m in request.messages],
            "temperature": p.temperature,
            "top_p": p.top_p,
            "max_tokens": p.max_tokens,
        }
        if p.seed is not None:
            args["seed"] = p.seed
        if p.stop:
            args["stop"] = p.stop
        if p.json_mode:
            args["response_format"] = {"type": "json_object"}
        return args

    async def complete(self, request: ChatRequest) -> Completion:
        if self._loaded is None:
            await self.check()
        loaded = self._loaded
        assert loaded is not None
        args = self._arguments(request)
        recorder = TokenLogprobRecorder() if self.spec.logprobs else None
        if recorder is not None:
            args["logits_processor"] = [recorder]

        def run() -> dict[str, Any]:
            with loaded.lock:
                return loaded.llama.create_chat_completion(**args)

        try:
            out = await asyncio.get_running_loop().run_in_executor(loaded.executor, run)
        except Exception as exc:  # e.g. the prompt does not fit the context window
            raise PermanentError(f"local model failed: {exc}") from exc
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return Completion(
            text=choice["message"].get("content") or "",
            usage=Usage(
                prompt_tokens=usage.get("prompt_tokens", 0),
                completion_tokens=usage.get("completion_tokens", 0),
            ),
            finish_reason=choice.get("finish_reason"),
            logprobs=Logprobs.of(recorder.logprobs) if recorder is not None else None,
        )

    async def aclose(self) -> None:
        # The model stays loaded for the process: the next client reuses it.
        self._loaded = None
