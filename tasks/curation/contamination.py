"""Contamination check: reject rows that share long word n-grams with evaluation sets.

As in the GPT-3 and Llama reports, a row is flagged when it shares an n-gram (13 words
by default, after lower-casing and dropping punctuation) with an item of a benchmark.
Benchmarks are files in a folder the user names (see ``examples/evals/README.md``):

- ``NAME.jsonl``: one item per line, a JSON object; its text is ``eval_fields`` joined,
  or every string in the object (recursively) when ``eval_fields`` is not set;
- ``NAME.txt``: items separated by blank lines.

The benchmark's name is the file's path under the folder without its suffix
(``mmlu/law.jsonl`` → ``mmlu/law``). An item shorter than ``n`` words but at least
``min_tokens`` long is matched whole; shorter ones are ignored (they match by chance).

This is a per-batch stage: the n-gram index (one 64-bit hash per distinct eval n-gram)
is built once per process and configuration. The configuration carries a digest of the
folder's files, so a changed eval set reruns the stage instead of reusing its cache.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, model_validator

from tasks.curation.common import text_of
from tasks.pipeline.stage import Stage, StageContext, StageResult

_WORD = re.compile(r"\w+")
SUFFIXES = (".jsonl", ".txt")


class ContaminationError(ValueError):
    """An eval folder that is missing or holds a malformed file."""


class ContaminationConfig(BaseModel):
    fields: list[str] = Field(description="fields of a row checked for overlap")
    against: str = Field(description="folder of eval sets (.jsonl / .txt files)")
    n: int = Field(13, ge=3, le=64, description="n-gram length in words")
    min_matches: int = Field(1, ge=1, description="shared n-grams needed to flag a row")
    min_tokens: int = Field(8, ge=1, description="eval items shorter than this are ignored")
    eval_fields: list[str] | None = Field(None, description="fields of a .jsonl eval item")
    against_digest: str = Field("", description="set automatically from the folder's files")

    @model_validator(mode="after")
    def _digest(self) -> ContaminationConfig:
        if not self.against_digest:
            self.against_digest = folder_digest(Path(self.against))
        return self


def eval_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ContaminationError(f"no eval folder {folder}")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
    if not files:
        raise ContaminationError(f"{folder} holds no .jsonl or .txt eval set")
    return files


def folder_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in eval_files(folder):
        h.update(str(path.relative_to(folder)).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def read_items(path: Path, eval_fields: list[str] | None) -> list[str]:
    """The texts of one eval file's items."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".txt":
        return [chunk.strip() for chunk in re.split(r"\n\s*\n", text) if chunk.strip()]
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ContaminationError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if eval_fields:
            items.append(text_of(obj, eval_fields) if isinstance(obj, dict) else "")
        else:
            items.append("\n".join(_strings(obj)))
    return items


@dataclass
class EvalIndex:
    n: int
    names: list[str]
    grams: dict[int, int] = field(default_factory=dict)  # n-gram hash → bitmask of benchmarks
    short_lengths: set[int] = field(default_factory=set)  # lengths of whole short items

    def add(self, tokens: list[str], benchmark: int, min_tokens: int) -> None:
        if len(tokens) < min_tokens:
            return
        bit = 1 << benchmark
        if len(tokens) < self.n:
            self.short_lengths.add(len(tokens))
            key = hash(" ".join(tokens))
            self.grams[key] = self.grams.get(key, 0) | bit
            return
        for i in range(len(tokens) - self.n + 1):
            key = hash(" ".join(tokens[i : i + self.n]))
            self.grams[key] = self.grams.get(key, 0) | bit

    def matches(self, text: str) -> tuple[Counter[str], str]:
        """Shared n-grams per benchmark, and one shared n-gram as an example."""
        tokens = words(text)
        found: Counter[str] = Counter()
        example = ""
        for size in (self.n, *sorted(self.short_lengths)):
            for i in range(len(tokens) - size + 1):
                gram = " ".join(tokens[i : i + size])
                mask = self.grams.get(hash(gram))
                if not mask:
                    continue
                example = example or gram
                for b, name in enumerate(self.names):
                    if mask >> b & 1:
                        found[name] += 1
        return found, example


@lru_cache(maxsize=8)
def _load_index(
    folder: str, digest: str, n: int, min_tokens: int, eval_fields: tuple[str, ...] | None
) -> EvalIndex:
    root = Path(folder)
    files = eval_files(root)
    index = EvalIndex(n=n, names=[str(p.relative_to(root).with_suffix("")) for p in files])
    for b, path in enumerate(files):
        for item in read_items(path, list(eval_fields) if eval_fields else None):
            index.add(words(item), b, min_tokens)
    return index


def load_index(config: ContaminationConfig) -> EvalIndex:
    return _load_index(
        str(Path(config.against).resolve()),
        config.against_digest,
        config.n,
        config.min_tokens,
        tuple(config.eval_fields) if config.eval_fields else None,
    )


def contamination_batch(
    rows: list[dict[str, Any]], config: ContaminationConfig, ctx: StageContext
) -> StageResult:
    index = load_index(config)
    out = StageResult()
    for row in rows:
        found, example = index.matches(text_of(row, config.fields))
        flagged = {k: v for k, v in found.items() if v >= config.min_matches}
        if not flagged:
            out.kept.append(row)
            continue
        worst = max(sorted(flagged), key=lambda k: flagged[k])
        out.reject(
            row,
            ctx.stage,
            f"contaminated: overlaps {worst}",
            {"benchmark": worst, "matches": flagged, "ngram": example, "n": config.n},
        )
    return out


def contamination_stage(name: str = "contamination") -> Stage:
    return Stage(name=name, fn=contamination_batch)
