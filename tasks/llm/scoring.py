"""Scoring a given text: the log-probability a model gives each token of a continuation
after a prefix, with no sampling. What instruction-following difficulty (IFD), utility
and probability-read judgements need, where a chat completion only scores its own answer.

A :class:`Scorer` answers ``score(prefix, continuation) -> token log-probabilities`` of
the continuation's tokens. Two sit behind it:

- :class:`EmbeddedScorer`: the embedded GGUF model, the same loaded instance the local
  chat provider uses (never a second copy), its calls serialized on the model's lock. The
  prefix and continuation are decoded in one pass with logits for every position.
- :class:`CompletionsScorer`: an OpenAI-compatible ``/completions`` endpoint (vLLM,
  OpenAI's legacy completion models) with ``echo=true, logprobs`` over the joined text;
  the continuation's tokens are those starting at or after the prefix's length.

:class:`JournaledScorer` puts the journal in front of either, keyed like a chat request
(provider, model, prefix, continuation), so a re-run scores nothing twice and each score
is one journal entry (template ``score``) with the token count and mean log-probability.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tasks.llm.base import ChatResult, ConfigError, Logprobs, ProviderSpec, Usage
from tasks.llm.journal import Journal, JournalEntry

SCORE_TEMPLATE = "score"
CHOICE_TEMPLATE = "score/choice"
SCORE_VERSION = "1"


class ScoreError(Exception):
    """One text could not be scored (a server error: asking again may work)."""


class Unscorable(ScoreError):
    """One text can never be scored by this model (longer than its context, empty):
    asking again would fail the same way, so it is not a failed call."""


class Scorer(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def model(self) -> str: ...

    def score(self, prefix: str, continuation: str) -> list[float]:
        """The log-probability of each token of ``continuation`` after ``prefix``."""
        ...

    def choose(self, prefix: str, options: list[str]) -> list[float]:
        """The log-probability of each option's first token as the token after
        ``prefix`` (a yes/no judgement read from the model's distribution)."""
        ...


# --- the embedded model ---------------------------------------------------------------------


def _log_softmax_at(row: np.ndarray, token: int) -> float:
    values = row.astype(np.float64)
    top = float(values.max())
    return float(values[token]) - top - float(np.log(np.exp(values - top).sum()))


class EmbeddedScorer:
    """The embedded (or any local GGUF) model as a scorer. ``spec.model``: a GGUF path;
    empty: the embedded model."""

    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec
        self._path: Path | None = Path(spec.model) if spec.model else None
        self._loaded: Any = None

    @property
    def name(self) -> str:
        return "local"

    @property
    def model(self) -> str:
        self._load()
        assert self._path is not None
        return self._path.name

    def _load(self) -> Any:
        if self._loaded is None:
            from tasks.llm.local_provider import embedded_model_path, load_model

            if self._path is None:
                self._path = embedded_model_path()
            if not self._path.is_file():
                raise ConfigError(f"GGUF model file not found: {self._path}")
            self._loaded = load_model(self._path)
        return self._loaded

    def score(self, prefix: str, continuation: str) -> list[float]:
        loaded = self._load()

        def run() -> list[float]:
            with loaded.lock:
                return _score_llama(loaded.llama, prefix, continuation)

        return loaded.executor.submit(run).result()

    def choose(self, prefix: str, options: list[str]) -> list[float]:
        loaded = self._load()

        def run() -> list[float]:
            with loaded.lock:
                return _choose_llama(loaded.llama, prefix, options)

        return loaded.executor.submit(run).result()


def _choose_llama(llama: Any, prefix: str, options: list[str]) -> list[float]:
    """One decode of ``prefix`` (logits at its last position only), then the
    log-probability of each option's first token."""
    tokens = llama.tokenize(prefix.encode(), add_bos=True, special=True)
    if not tokens:
        raise Unscorable("empty prefix")
    if len(tokens) > llama.n_ctx():
        raise Unscorable(f"{len(tokens)} tokens do not fit the {llama.n_ctx()}-token context")
    firsts = []
    for option in options:
        ids = llama.tokenize(option.encode(), add_bos=False, special=False)
        if not ids:
            raise Unscorable(f"option {option!r} has no token")
        firsts.append(ids[0])
    n_batch = llama.n_batch
    llama.reset()
    llama._ctx.kv_cache_clear()
    try:
        for start in range(0, len(tokens), n_batch):
            chunk = tokens[start : start + n_batch]
            llama._batch.set_batch(batch=chunk, n_past=start, logits_all=False)
            llama._ctx.decode(llama._batch)
        last = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(llama.n_vocab(),))
        return [_log_softmax_at(last, token) for token in firsts]
    finally:
        llama.reset()
        llama._ctx.kv_cache_clear()


def _score_llama(llama: Any, prefix: str, continuation: str) -> list[float]:
    """Decode prefix + continuation with logits at every position (the batch asks for
    them, so the model needs no ``logits_all``), then read each continuation token's
    log-probability from the position before it. The shared model's state is reset
    before and after, so the next chat completion evaluates its prompt from scratch."""
    head = llama.tokenize(prefix.encode(), add_bos=True, special=True)
    tail = llama.tokenize(continuation.encode(), add_bos=False, special=False)
    if not head or not tail:
        raise Unscorable("empty prefix or continuation")
    tokens = head + tail
    if len(tokens) > llama.n_ctx():
        raise Unscorable(f"{len(tokens)} tokens do not fit the {llama.n_ctx()}-token context")
    n_vocab, n_batch, first = llama.n_vocab(), llama.n_batch, len(head) - 1
    out: list[float] = []
    llama.reset()
    llama._ctx.kv_cache_clear()
    try:
        for start in range(0, len(tokens), n_batch):
            chunk = tokens[start : start + n_batch]
            llama._batch.set_batch(batch=chunk, n_past=start, logits_all=False)
            # Logits only where a continuation token is predicted (and the chunk's last
            # position, which llama.cpp always returns): the prefix costs no output layer.
            wanted = [j for j in range(len(chunk)) if first <= start + j < len(tokens) - 1]
            outputs = sorted(set(wanted) | {len(chunk) - 1})
            for j in outputs:
                llama._batch.batch.logits[j] = True
            llama._ctx.decode(llama._batch)
            logits = np.ctypeslib.as_array(
                llama._ctx.get_logits(), shape=(len(outputs) * n_vocab,)
            ).reshape(len(outputs), n_vocab)
            row = {j: r for r, j in enumerate(outputs)}
            for j in wanted:
                out.append(_log_softmax_at(logits[row[j]], tokens[start + j + 1]))
    finally:
        llama.reset()
        llama._ctx.kv_cache_clear()
    return out


# --- an OpenAI-compatible completions endpoint ----------------------------------------------


class CompletionsScorer:
    """``/completions`` with ``echo`` and ``logprobs`` (vLLM and OpenAI-compatible servers
    that support them; the llama.cpp server does not echo)."""

    def __init__(self, spec: ProviderSpec) -> None:
        if not spec.base_url and spec.kind != "openai":
            raise ConfigError(f"a {spec.kind} scorer needs a base_url")
        if not spec.model:
            raise ConfigError("a completions scorer needs --model")
        import openai

        from tasks.llm.openai_provider import DUMMY_KEY, validate_url
        from tasks.llm.secrets import api_key

        if spec.base_url:
            validate_url(spec.base_url)
        env = "OPENAI_API_KEY" if spec.kind == "openai" else None
        self.spec = spec
        self._sdk = openai.OpenAI(
            api_key=api_key(spec, env) or DUMMY_KEY,
            base_url=spec.base_url or None,
            max_retries=min(spec.max_retries, 6),  # the SDK backs off on 429 and 5xx
            timeout=spec.timeout_s,
        )

    @property
    def name(self) -> str:
        return self.spec.kind

    @property
    def model(self) -> str:
        return self.spec.model

    def score(self, prefix: str, continuation: str) -> list[float]:
        import openai

        text = prefix + continuation
        try:
            out = self._sdk.completions.create(
                model=self.spec.model, prompt=text, echo=True, logprobs=1, max_tokens=1,
                temperature=0.0,
            )  # fmt: skip
        except openai.BadRequestError as exc:  # e.g. longer than the model's context
            raise Unscorable(f"{type(exc).__name__}: {exc}") from exc
        except openai.APIError as exc:
            raise ScoreError(f"{type(exc).__name__}: {exc}") from exc
        block = out.choices[0].logprobs if out.choices else None
        if block is None or block.token_logprobs is None or block.text_offset is None:
            raise ScoreError("the server returned no echoed logprobs (does it support echo?)")
        start, end = len(prefix), len(text)
        offsets = list(block.text_offset)
        ends = offsets[1:] + [offsets[-1] + len((block.tokens or [""])[-1])] if offsets else []
        # A token that straddles the boundary (" world" after "hello") belongs to the
        # continuation: the server's tokenizer saw the joined text.
        values = [
            lp
            for offset, stop, lp in zip(offsets, ends, block.token_logprobs, strict=False)
            if offset < end and stop > start and lp is not None
        ]
        if not values:
            raise ScoreError("no continuation token among the echoed logprobs")
        return [float(v) for v in values]

    def choose(self, prefix: str, options: list[str]) -> list[float]:
        """Each option scored after the prefix (one echo request per option); its first
        token's log-probability."""
        return [self.score(prefix, option)[0] for option in options]


# --- the journal in front -------------------------------------------------------------------


@dataclass
class Scored:
    """One scored continuation, as a journal-backed call: ``logprobs`` (None when it
    failed, with ``error``) and the :class:`ChatResult` a stage records as its call."""

    logprobs: list[float] | None
    result: ChatResult
    permanent: bool = False  # failed for good (Unscorable): nothing to ask again

    @property
    def summary(self) -> Logprobs | None:
        return Logprobs.of(self.logprobs) if self.logprobs else None

    @property
    def error(self) -> str | None:
        return self.result.error


def score_key(
    provider: str, model: str, prefix: str, continuation: str, choice: bool = False
) -> str:
    payload = {
        "provider": provider,
        "model": model,
        "template": CHOICE_TEMPLATE if choice else SCORE_TEMPLATE,
        "template_version": SCORE_VERSION,
        "score": [prefix, continuation],
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class JournaledScorer:
    """A scorer behind the journal. ``score_many`` answers pairs in order: journal hits
    first, the rest scored (in parallel threads for a server; the embedded model is
    serialized on its lock anyway) and journaled as each comes."""

    def __init__(self, scorer: Scorer, journal: Journal | None, concurrency: int = 1) -> None:
        self.scorer = scorer
        self.journal = journal
        self.concurrency = max(1, concurrency)

    def score_many(self, pairs: list[tuple[str, str]], *, choice: bool = False) -> list[Scored]:
        name, model = self.scorer.name, self.scorer.model
        keys = [score_key(name, model, p, c, choice) for p, c in pairs]
        found = self.journal.get_many(keys) if self.journal is not None else {}
        out: list[Scored | None] = [None] * len(pairs)
        todo: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            if key in found:
                out[i] = _from_entry(found[key])
            else:
                todo.setdefault(key, []).append(i)

        def one(key: str) -> tuple[str, Scored]:
            prefix, continuation = pairs[todo[key][0]]
            return key, self._score(key, prefix, continuation, choice)

        workers = min(self.concurrency, len(todo)) or 1
        with ThreadPoolExecutor(workers, thread_name_prefix="winnow-score") as pool:
            for key, scored in pool.map(one, list(todo)):
                for n, i in enumerate(todo[key]):
                    out[i] = scored if n == 0 else _as_cached(scored)
        return out  # type: ignore[return-value]

    def choose_many(self, items: list[tuple[str, list[str]]]) -> list[Scored]:
        """Each ``(prefix, options)``: the options' next-token log-probabilities (in
        ``Scored.logprobs``, one per option), journaled under their own keys."""
        pairs = [(prefix, "\x00".join(options)) for prefix, options in items]
        return self.score_many(pairs, choice=True)

    def _score(self, key: str, prefix: str, continuation: str, choice: bool = False) -> Scored:
        name, model = self.scorer.name, self.scorer.model
        started = time.monotonic()
        try:
            if choice:
                values = self.scorer.choose(prefix, continuation.split("\x00"))
            else:
                values = self.scorer.score(prefix, continuation)
        except (ScoreError, ConfigError) as exc:
            result = ChatResult(
                key=key, error=str(exc), provider=name, model=model, attempts=1,
                latency_s=time.monotonic() - started,
            )  # fmt: skip
            return Scored(None, result, permanent=isinstance(exc, Unscorable))
        latency = time.monotonic() - started
        summary = Logprobs.of(values)
        entry = JournalEntry(
            key=key,
            provider=name,
            model=model,
            template=CHOICE_TEMPLATE if choice else SCORE_TEMPLATE,
            template_version=SCORE_VERSION,
            text=json.dumps(values),
            prompt_tokens=len(values),
            latency_s=latency,
            request={"prefix": prefix, "continuation": continuation},
            mean_logprob=summary.mean_logprob if summary else None,
            logprob_tokens=summary.tokens if summary else None,
        )
        if self.journal is not None:
            self.journal.put(entry)
        return Scored(values, _result(entry, cached=False))


def _result(entry: JournalEntry, cached: bool) -> ChatResult:
    summary = (
        Logprobs(mean_logprob=entry.mean_logprob, tokens=entry.logprob_tokens)
        if entry.mean_logprob is not None and entry.logprob_tokens
        else None
    )
    return ChatResult(
        key=entry.key,
        text=entry.text,
        usage=Usage(prompt_tokens=entry.prompt_tokens),
        latency_s=entry.latency_s,
        cached=cached,
        provider=entry.provider,
        model=entry.model,
        attempts=0 if cached else 1,
        logprobs=summary,
    )


def _from_entry(entry: JournalEntry) -> Scored:
    values = [float(v) for v in json.loads(entry.text)]
    return Scored(values, _result(entry, cached=True))


def _as_cached(scored: Scored) -> Scored:
    result = scored.result.model_copy(update={"cached": True, "attempts": 0})
    return Scored(scored.logprobs, result, scored.permanent)


def calls_of(reads: list[Scored]) -> list[ChatResult]:
    """The call rows a stage records for these reads: a text that can never be scored
    was no failed call (its shard is complete; asking again would fail the same way)."""
    return [r.result.model_copy(update={"error": None}) if r.permanent else r.result for r in reads]


def perplexity(values: list[float]) -> float:
    """exp of the mean negative log-probability."""
    return math.exp(-sum(values) / len(values))


# --- one scorer per provider and model in the process ---------------------------------------

_scorers: dict[tuple[str, str, str, str], JournaledScorer] = {}
_scorers_lock = threading.Lock()


def scorer_for(spec: ProviderSpec, journal: Journal | None = None) -> JournaledScorer:
    """The process's journaled scorer for ``spec`` (cached: the embedded model is loaded
    once and shared with the chat provider). ``journal=None``: the project's journal."""
    if spec.kind == "anthropic":
        raise ConfigError("the Anthropic API returns no log-probabilities: score with another")
    from tasks.core.paths import journal_path

    where = str(journal.path) if journal is not None else str(journal_path())
    cache_key = (spec.kind, spec.model, spec.base_url or "", where)
    with _scorers_lock:
        if cache_key in _scorers:
            return _scorers[cache_key]
        base: Scorer = EmbeddedScorer(spec) if spec.kind == "local" else CompletionsScorer(spec)
        concurrency = 1 if spec.kind == "local" else min(spec.max_concurrency, 8)
        made = JournaledScorer(base, journal if journal is not None else Journal(), concurrency)
        _scorers[cache_key] = made
        return made
